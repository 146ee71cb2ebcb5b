"""The model registry: manifests (``model.toml``), loaders (safetensors + arch, state_dict, torch.export, ONNX),
sha256 verification, versions, and the conversion of outputs to images.

Public API::

    from service.registry import Registry, LoadedModel, ModelEntry, parse_ref, load_version
    from service.registry import Manifest, read_manifest
    from service.registry import RegistryError, ManifestError, IntegrityError, UnsafeFileError, ProviderError, \
        ModelNotFoundError, ModelNotReadyError
"""

from service.registry.errors import (
    IntegrityError,
    ManifestError,
    ModelNotFoundError,
    ModelNotReadyError,
    ProviderError,
    RegistryError,
    UnsafeFileError,
)
from service.registry.model import LoadedModel, load_version
from service.registry.registry import ModelEntry, Registry, parse_ref
from service.registry.schema import MANIFEST_NAME, Manifest, read_manifest

__all__ = [
    "MANIFEST_NAME",
    "IntegrityError",
    "LoadedModel",
    "Manifest",
    "ManifestError",
    "ModelEntry",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ProviderError",
    "Registry",
    "RegistryError",
    "UnsafeFileError",
    "load_version",
    "parse_ref",
    "read_manifest",
]
