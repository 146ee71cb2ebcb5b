"""Toy registries on disk for API, engine and e2e tests (tiny safetensors / ONNX models with analytic pairs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors.torch import save_file
from torch import nn

from service.registry.files import sha256_file
from tests.api import toy_arch

ARCH = "tests.api.toy_arch"
HOLDOUT = 32


def _save(net: nn.Module, cls: str, path: Path, fmt: str, in_shape: tuple[int, ...]) -> dict[str, Any]:
    net = net.eval()
    if fmt == "safetensors":
        save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.onnx.export(net, (torch.randn(2, *in_shape),), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    table: dict[str, Any] = {"format": fmt, "file": path.name, "sha256": sha256_file(path)}
    if fmt == "safetensors":
        table["arch"] = f"{ARCH}:{cls}"
    return table


def write_model(root: Path, name: str, g: str, d: str, latent: list[int], output: dict[str, Any], version: int = 1,
                fmt: str = "safetensors", samplers: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """One version directory ``root/name/version`` with G = ``g`` and D = ``d`` (class names in toy_arch)."""
    torch.manual_seed(seed)
    vdir = root / name / str(version)
    vdir.mkdir(parents=True)
    ext = "safetensors" if fmt == "safetensors" else "onnx"
    gnet, dnet = getattr(toy_arch, g)(), getattr(toy_arch, d)()
    manifest: dict[str, Any] = {
        "name": name, "version": version, "description": f"toy {g} / {d}",
        "latent": {"shape": latent}, "output": output,
        "generator": _save(gnet, g, vdir / f"generator.{ext}", fmt, tuple(latent)),
        "discriminator": {**_save(dnet, d, vdir / f"discriminator.{ext}", fmt, tuple(output["shape"])),
                          "output": "logit"},
    }
    lo, hi = output["range"]
    x = (torch.rand(HOLDOUT, *output["shape"]) * (hi - lo) * 0.5 + (lo + hi) / 2 - (hi - lo) / 4).contiguous()
    save_file({"x": x}, str(vdir / "holdout.safetensors"))
    manifest["data"] = {"holdout": "holdout.safetensors", "holdout_sha256": sha256_file(vdir / "holdout.safetensors")}
    if samplers:
        manifest["samplers"] = samplers
    (vdir / "model.toml").write_text(tomli_w.dumps(manifest))
    return vdir


GAUSS_OUT = {"kind": "vector", "shape": [1], "range": [-10.0, 10.0]}
IMAGE_OUT = {"kind": "image", "shape": [1, 4, 4], "range": [-1.0, 1.0]}
MLP_OUT = {"kind": "vector", "shape": [2], "range": [-1.0, 1.0]}


def gauss(root: Path, name: str = "gauss", **kw: Any) -> Path:
    return write_model(root, name, "IdentityG", "GaussLogitD", [1], GAUSS_OUT, **kw)


def build(root: Path, onnx: bool = False, failing: bool = True) -> Path:
    """The standard toy registry: gauss (analytic, mh steps default 50), image, failing, nan [, onnx]."""
    gauss(root, samplers={"mh": {"steps": 50}})
    write_model(root, "image", "ImageG", "ImageD", [3], IMAGE_OUT)
    if failing:
        write_model(root, "failing", "IdentityG", "FailingD", [1], GAUSS_OUT)
    write_model(root, "nan", "NanG", "GaussLogitD", [1], GAUSS_OUT)
    if onnx:
        write_model(root, "onnx", "MlpG", "MlpD", [2], MLP_OUT, fmt="onnx")
    return root
