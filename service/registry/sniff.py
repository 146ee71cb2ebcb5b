"""What a weight file is, from its zip directory, so that a file in the wrong format gets our advice, not torch's.

``torch.save``, ``torch.jit.save`` and ``torch.export.save`` all write zip archives with one top directory; their
entries tell them apart (checked on torch 2.13):

- TorchScript (``torch.jit.save``):  ``<top>/constants.pkl`` and ``<top>/code/...`` (what ``torch.load`` looks for
  before it dispatches to ``torch.jit.load``).
- torch.export (``torch.export.save``): ``<top>/archive_format`` and ``<top>/models/*.json``.
- ``torch.save``: ``<top>/data.pkl`` without the above.

Safetensors and ONNX files are not zip archives.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

from service.registry.errors import ManifestError

ArchiveKind = Literal["torchscript", "torch_export", "torch_save"]

TORCHSCRIPT_ADVICE = (
    "TorchScript is not supported: re-export the network with torch.export (`gansampler-server export`, or "
    'torch.export.save as in docs/bring-your-own-model.md) and set format = "torch_export", or save '
    'net.state_dict() and set format = "state_dict" with arch'
)


def archive_kind(path: Path) -> ArchiveKind | None:
    """The kind of torch archive at ``path``, or None (not a zip archive, or none of these)."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    inner = {name.split("/", 1)[1] for name in names if "/" in name}
    if "constants.pkl" in inner or any(name.startswith("code/") for name in inner):
        return "torchscript"
    if "archive_format" in inner or any(name.startswith("models/") and name.endswith(".json") for name in inner):
        return "torch_export"
    if "data.pkl" in inner:
        return "torch_save"
    return None


def check_archive(path: Path, fmt: str, manifest_path: Path, field: str) -> None:
    """Refuse a file whose archive kind contradicts ``fmt`` (``[generator] format``), saying what it is and what to
    do; a file of an unknown kind passes (the format's own loader reports what is wrong with it)."""
    kind = archive_kind(path)
    if kind == "torchscript":
        raise ManifestError(
            manifest_path, field, f"{path.name!r} is a TorchScript archive (torch.jit.save); {TORCHSCRIPT_ADVICE}"
        )
    if kind == "torch_export" and fmt != "torch_export":
        raise ManifestError(
            manifest_path,
            field,
            f'{path.name!r} is a torch.export archive, not {fmt}: set format = "torch_export" (no arch or kwargs)',
        )
    if kind == "torch_save" and fmt in ("torch_export", "onnx", "safetensors"):
        raise ManifestError(
            manifest_path,
            field,
            f"{path.name!r} was written by torch.save (a state_dict?), not {fmt}: set format = \"state_dict\" with "
            "arch and kwargs, or turn it into a torch.export archive with `gansampler-server export`",
        )
