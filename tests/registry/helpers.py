"""Building toy model versions on disk for registry tests."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors.torch import save_file
from torch import nn

from service.registry.export import export_network
from service.registry.files import sha256_file
from tests.registry.toy_arch import ToyG

ARCH = "tests.registry.toy_arch"
EXT = {"safetensors": "safetensors", "state_dict": "pth", "torch_export": "pt2", "onnx": "onnx"}
NZ = 2
NX = 2


def save_network(
    net: nn.Module, arch: str, kwargs: dict[str, Any], fmt: str, path: Path, in_shape: tuple[int, ...]
) -> dict[str, Any]:
    """Write ``net`` in ``fmt`` to ``path``; returns its manifest table (format, file, sha256, arch, kwargs)."""
    net = net.eval()
    if fmt == "safetensors":
        save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}, str(path))
    elif fmt == "state_dict":
        torch.save(net.state_dict(), path)
    elif fmt == "torch_export":
        export_network(net, in_shape, path)
    elif fmt == "onnx":
        torch.onnx.export(
            net,
            (torch.randn(2, *in_shape),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
        )
    else:
        raise ValueError(fmt)
    table: dict[str, Any] = {"format": fmt, "file": path.name, "sha256": sha256_file(path)}
    if fmt in ("safetensors", "state_dict"):
        table["arch"] = arch
        if kwargs:
            table["kwargs"] = kwargs
    return table


def make_version(
    root: Path,
    name: str = "toy",
    version: int = 1,
    g_format: str = "safetensors",
    d_format: str = "safetensors",
    d_output: str = "logit",
    d_class: str = "ToyD",
    holdout: int = 64,
    calibration: dict[str, Any] | None = None,
    samplers: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """A complete toy version directory (MLP G and D on 2-D vectors); returns it."""
    torch.manual_seed(seed)
    vdir = root / name / str(version)
    vdir.mkdir(parents=True)
    sigmoid = d_output == "probability"
    d_kwargs: dict[str, Any] = {"nx": NX, "sigmoid": True} if sigmoid else {"nx": NX}
    import tests.registry.toy_arch as toy_arch

    d_net = getattr(toy_arch, d_class)(**d_kwargs)
    g_table = save_network(
        ToyG(NZ, NX), f"{ARCH}:ToyG", {"nz": NZ, "nx": NX}, g_format, vdir / f"generator.{EXT[g_format]}", (NZ,)
    )
    d_table = save_network(
        d_net, f"{ARCH}:{d_class}", d_kwargs, d_format, vdir / f"discriminator.{EXT[d_format]}", (NX,)
    )
    d_table["output"] = d_output
    manifest: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": "toy MLP pair",
        "latent": {"shape": [NZ]},
        "output": {"kind": "vector", "shape": [NX], "range": [-1.0, 1.0]},
        "generator": g_table,
        "discriminator": d_table,
    }
    if holdout:
        x = (torch.rand(holdout, NX) * 1.6 - 0.8).contiguous()
        save_file({"x": x}, str(vdir / "holdout.safetensors"))
        manifest["data"] = {
            "holdout": "holdout.safetensors",
            "holdout_sha256": sha256_file(vdir / "holdout.safetensors"),
        }
    if calibration is not None:
        manifest["calibration"] = calibration
    if samplers is not None:
        manifest["samplers"] = samplers
    write_manifest(vdir, manifest)
    return vdir


def read_toml(vdir: Path) -> dict[str, Any]:
    return tomllib.loads((vdir / "model.toml").read_text())


def write_manifest(vdir: Path, manifest: dict[str, Any]) -> None:
    (vdir / "model.toml").write_text(tomli_w.dumps(manifest))


def with_runtime(vdir: Path, runtime: dict[str, Any] | None) -> Path:
    """Replace the ``[runtime]`` table of ``vdir``'s model.toml by ``runtime`` (none when None); returns vdir."""
    manifest = read_toml(vdir)
    manifest.pop("runtime", None)
    if runtime is not None:
        manifest["runtime"] = runtime
    write_manifest(vdir, manifest)
    return vdir
