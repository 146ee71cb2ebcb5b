"""Writing a demo model's version directory: weights, holdout and ``model.toml`` (the manifest reference is in
docs/bring-your-own-model.md).

Layout written by :func:`write_version`::

    <out>/<name>/<version>/generator.safetensors       G's state_dict
                           discriminator.safetensors   D's state_dict
                           holdout.safetensors         {"x": (N, *output_shape) held-out REAL samples}
                           model.toml                  manifest with the sha256 of each file
                           training.toml               how it was trained (informational)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import tomli_w
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from service.registry.files import sha256_file

GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
HOLDOUT_FILE = "holdout.safetensors"
MANIFEST_FILE = "model.toml"


class ModelSpec(NamedTuple):
    """Everything a manifest says about a demo model besides its files.

    output_range: (low, high) or None for unbounded vector outputs.
    samplers: per-sampler defaults, ``{"rep": {"steps": 640, "step_size": 0.01}}``.
    """

    name: str
    version: int
    description: str
    latent_shape: tuple[int, ...]
    output_kind: str
    output_shape: tuple[int, ...]
    output_range: tuple[float, float] | None
    generator_arch: str
    generator_kwargs: Mapping[str, Any]
    discriminator_arch: str
    discriminator_kwargs: Mapping[str, Any]
    samplers: Mapping[str, Mapping[str, float | int]]
    training: Mapping[str, Any]


def state_tensors(module: nn.Module) -> dict[str, Tensor]:
    """A module's state_dict as contiguous CPU tensors (safetensors refuses shared or strided storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def build_manifest(spec: ModelSpec, hashes: Mapping[str, str]) -> dict[str, Any]:
    """The manifest as a TOML-ready dict; ``hashes`` maps file names to their sha256."""
    output: dict[str, Any] = {"kind": spec.output_kind, "shape": list(spec.output_shape)}
    if spec.output_range is not None:
        output["range"] = [float(spec.output_range[0]), float(spec.output_range[1])]
    manifest: dict[str, Any] = {
        "name": spec.name,
        "version": spec.version,
        "description": spec.description,
        "latent": {"shape": list(spec.latent_shape)},
        "output": output,
        "generator": {
            "format": "safetensors",
            "file": GENERATOR_FILE,
            "arch": spec.generator_arch,
            "kwargs": dict(spec.generator_kwargs),
            "sha256": hashes[GENERATOR_FILE],
        },
        "discriminator": {
            "format": "safetensors",
            "file": DISCRIMINATOR_FILE,
            "arch": spec.discriminator_arch,
            "kwargs": dict(spec.discriminator_kwargs),
            "output": "logit",
            "sha256": hashes[DISCRIMINATOR_FILE],
        },
        "data": {"holdout": HOLDOUT_FILE, "holdout_sha256": hashes[HOLDOUT_FILE]},
    }
    if spec.samplers:
        manifest["samplers"] = {k: dict(v) for k, v in spec.samplers.items()}
    return manifest


def write_version(out: Path, spec: ModelSpec, generator: nn.Module, discriminator: nn.Module, holdout: Tensor) -> Path:
    """Write weights, holdout and manifest under ``out/<name>/<version>/``; returns that directory.

    holdout: (N, *output_shape) held-out real samples, stored under key ``"x"``.
    The training record (``spec.training``: steps, seeds, split rule, raw quality) goes into ``training.toml``
    beside the manifest, so the manifest keeps to the registry's schema.
    """
    if tuple(holdout.shape[1:]) != tuple(spec.output_shape):
        raise ValueError(f"holdout must have shape (N, *{spec.output_shape}), got {tuple(holdout.shape)}")
    vdir = out / spec.name / str(spec.version)
    vdir.mkdir(parents=True, exist_ok=True)
    save_file(state_tensors(generator), str(vdir / GENERATOR_FILE))
    save_file(state_tensors(discriminator), str(vdir / DISCRIMINATOR_FILE))
    save_file({"x": holdout.detach().cpu().to(torch.float32).contiguous()}, str(vdir / HOLDOUT_FILE))
    hashes = {f: sha256_file(vdir / f) for f in (GENERATOR_FILE, DISCRIMINATOR_FILE, HOLDOUT_FILE)}
    (vdir / MANIFEST_FILE).write_text(tomli_w.dumps(build_manifest(spec, hashes)))
    (vdir / "training.toml").write_text(tomli_w.dumps(dict(spec.training)))
    return vdir
