"""Bring your own model, end to end, the way docs/bring-your-own-model.md tells a user to.

The example scripts (examples/byo_*.py: a user's own GAN with its own classes) write registry entries into a fresh
root by the three routes (torch.export archives, state_dict + an importable arch, pytorch/examples DCGAN
checkpoints); an ONNX copy and a ``gansampler-server export`` copy are added; then ``gansampler-server verify`` and
``calibrate`` run as commands, ``gansampler-server serve`` runs as a real uvicorn process with the user's module on
PYTHONPATH, and every model is sampled over plain HTTP with every sampler it supports, in every encoding.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tomli_w
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/e2e has no __init__.py
    sys.path.insert(0, str(ROOT))

from tests.e2e.live_server import serve_process, server_command  # noqa: E402

EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.slow

TRAIN_STEPS = "60"  # the examples train for seconds here; the guide's defaults train ~20 s
DCGAN_STEPS = "4"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 120.0
SAMPLERS = ("raw", "mh", "rep", "ddls", "drs", "sir")
GRAD_SAMPLERS = ("rep", "ddls")
N = 3
STEPS = 20
MODELS = ("my-digits", "my-digits-sd", "my-digits-onnx", "my-digits-exported", "dcgan-digits64")


def _env() -> dict[str, str]:
    """The user's environment: their module (examples/my_gan.py) importable by the server through PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)]), "OMP_NUM_THREADS": "1"}


def _run(args: list[str], cwd: Path = ROOT) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _add_onnx_copy(models: Path) -> None:
    """my-digits-sd's networks as ONNX (forward only): what a user gets from torch.onnx.export."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from my_gan import NZ, Discriminator, Generator
        from registry_entry import sha256_file
    finally:
        sys.path.remove(str(EXAMPLES))
    src, dst = models / "my-digits-sd" / "1", models / "my-digits-onnx" / "1"
    dst.mkdir(parents=True)
    shutil.copy(src / "holdout.safetensors", dst)
    manifest = tomllib.loads((src / "model.toml").read_text())
    manifest["name"] = "my-digits-onnx"
    for role, net, shape in (("generator", Generator(), (NZ,)), ("discriminator", Discriminator(), (1, 8, 8))):
        net.load_state_dict(torch.load(src / f"{role}.pth", weights_only=True))
        torch.onnx.export(net.eval(), (torch.randn(2, *shape),), str(dst / f"{role}.onnx"), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
        manifest[role] = {"format": "onnx", "file": f"{role}.onnx", "sha256": sha256_file(dst / f"{role}.onnx")}
    manifest["discriminator"]["output"] = "logit"
    (dst / "model.toml").write_text(tomli_w.dumps(manifest))


def _add_exported_copy(models: Path) -> None:
    """my-digits-sd turned into .pt2 archives by ``gansampler-server export`` (a state_dict + arch -> no class)."""
    src, dst = models / "my-digits-sd" / "1", models / "my-digits-exported" / "1"
    dst.mkdir(parents=True)
    shutil.copy(src / "holdout.safetensors", dst)
    manifest = tomllib.loads((src / "model.toml").read_text())
    manifest["name"] = "my-digits-exported"
    for role, shape in (("generator", "16"), ("discriminator", "1,8,8")):
        table = manifest[role]
        out = _run([*server_command(), "export", "--arch", table["arch"], "--kwargs", json.dumps(table["kwargs"]),
                    "--weights", str(src / table["file"]), "--input-shape", shape, "--out", str(dst / f"{role}.pt2")])
        lines = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)  # the printed TOML lines
        manifest[role] = {"format": "torch_export", "file": f"{role}.pt2", "sha256": json.loads(lines["sha256"])}
    manifest["discriminator"]["output"] = "logit"
    (dst / "model.toml").write_text(tomli_w.dumps(manifest))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("byo") / "models"
    _run([sys.executable, str(EXAMPLES / "byo_torch_export.py"), str(models), "--steps", TRAIN_STEPS])
    _run([sys.executable, str(EXAMPLES / "byo_state_dict.py"), str(models), "--steps", TRAIN_STEPS])
    _run([sys.executable, str(EXAMPLES / "byo_pytorch_dcgan.py"), str(models), "--steps", DCGAN_STEPS])
    _add_onnx_copy(models)
    _add_exported_copy(models)
    verify = _run([*server_command(), "verify", "--root", str(models)])
    assert f"{len(MODELS)} ok, 0 failed" in verify, verify
    assert "final sigmoid of the discriminator removed" in verify  # the DCGAN's nn.Sigmoid, stripped
    for name in MODELS:
        out = _run([*server_command(), "calibrate", name, "--root", str(models), "--pilot", "500"])
        assert "held-out  AUC" in out and "wrote" in out, out
    return models


@pytest.fixture(scope="module")
def server(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_process(registry, tmp_path_factory.mktemp("data"), _env(), ROOT, START_TIMEOUT_S,
                       STOP_TIMEOUT_S) as (url, _):
        yield url


def _post(url: str, sampler: str, body: dict[str, object], accept: str = "application/json") -> httpx.Response:
    return httpx.post(f"{url}/v1/samples/{sampler}", json=body, headers={"accept": accept}, timeout=REQUEST_TIMEOUT_S)


def test_every_model_is_ready_and_calibrated(server: str) -> None:
    ready = httpx.get(f"{server}/readyz", timeout=10).json()
    assert ready["models"] == {f"{m}@1": "ready" for m in MODELS}
    for name in MODELS:
        info = httpx.get(f"{server}/v1/models/{name}", timeout=10).json()
        assert info["calibration"]["method"] == "platt" and 0.0 <= info["calibration"]["auc"] <= 1.0


@pytest.mark.parametrize("name", MODELS)
def test_every_supported_sampler_in_every_encoding(server: str, name: str) -> None:
    info = httpx.get(f"{server}/v1/models/{name}", timeout=10).json()
    shape = info["output"]["shape"]
    forward_only = info["formats"]["generator"] == "onnx"
    for sampler in SAMPLERS:
        assert info["samplers"][sampler]["supported"] is not (forward_only and sampler in GRAD_SAMPLERS)
        if not info["samplers"][sampler]["supported"]:
            continue
        body = {"model": name, "n": N, "seed": 5, "steps": STEPS}
        arr = _post(server, sampler, {**body, "output": "array"})
        assert arr.status_code == 200, arr.text
        data = arr.json()
        assert data["model"] == f"{name}@1" and data["diagnostics"]["calibrated"] is True
        x = np.asarray(data["samples"], dtype=np.float32)
        assert x.shape == (N, *shape) and np.isfinite(x).all() and np.abs(x).max() <= 1.0
        png = _post(server, sampler, {**body, "output": "png"})
        assert png.status_code == 200, png.text
        assert all(base64.b64decode(s).startswith(b"\x89PNG") for s in png.json()["samples"])
        npz = _post(server, sampler, body, accept="application/x-npz")
        assert npz.status_code == 200 and npz.headers["content-type"] == "application/x-npz"
        arrays = np.load(io.BytesIO(npz.content))
        np.testing.assert_allclose(arrays["samples"], x, atol=1e-6)  # same seed, same samples
        assert arrays["z"].shape == (N, *info["latent_shape"]) and arrays["logit_final"].shape == (N,)


@pytest.mark.parametrize("sampler", GRAD_SAMPLERS)
def test_a_forward_only_onnx_model_refuses_gradient_samplers_with_the_reason(server: str, sampler: str) -> None:
    r = _post(server, sampler, {"model": "my-digits-onnx", "n": 2})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and err["param"] == "sampler"
    assert "without gradients" in err["message"] and "torch_export" in err["message"]


def test_the_exported_copy_samples_like_the_state_dict_it_came_from(server: str) -> None:
    body = {"n": N, "seed": 11, "steps": STEPS, "output": "array"}
    a = _post(server, "rep", {**body, "model": "my-digits-sd"}).json()["samples"]
    b = _post(server, "rep", {**body, "model": "my-digits-exported"}).json()["samples"]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-3)


def test_the_standard_library_client_example_runs(server: str, tmp_path: Path) -> None:
    out = _run([sys.executable, str(EXAMPLES / "raw_http_client.py"), "--url", server, "--model", "my-digits-onnx",
                "--steps", str(STEPS), "--out", str(tmp_path)])
    assert "rep   unsupported -> 422" in out and "a bad request -> 422" in out
    assert (tmp_path / "mh.npz").is_file() and (tmp_path / "mh_0.png").read_bytes().startswith(b"\x89PNG")
