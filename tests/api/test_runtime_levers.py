"""``GET /v1/models/{ref}`` shows the ``forward`` and ``precision`` levers of ``[runtime]``, and requests run on them.

Models: the toy MLP pair of ``tests.api.toy_registry`` three times: plain, ``forward = "onnxruntime"`` and
``precision = "bfloat16"``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from tests.api.conftest import serve
from tests.api.toy_registry import MLP_OUT, write_model

LEVERS: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "ort": {"forward": "onnxruntime"},
    "bf16": {"precision": "bfloat16"},
}


def _registry(root: Path) -> Path:
    for name, runtime in LEVERS.items():
        vdir = write_model(root, name, "MlpG", "MlpD", [2], MLP_OUT)
        if runtime is not None:
            manifest = tomllib.loads((vdir / "model.toml").read_text())
            manifest["runtime"] = runtime
            (vdir / "model.toml").write_text(tomli_w.dumps(manifest))
    return root


async def test_model_info_shows_forward_and_precision(tmp_path: Path) -> None:
    async with serve(_registry(tmp_path / "models"), tmp_path / "data") as (client, services):
        info = {name: (await client.get(f"/v1/models/{name}")).json() for name in LEVERS}
        for name, body in info.items():
            assert body["state"] == "ready", body
            assert body["runtime"] == services.hub.get(f"{name}@1")[0].runtime

        plain = info["plain"]["runtime"]
        assert (plain["forward_setting"], plain["forward"], plain["precision_setting"], plain["precision"]) == (
            "torch", "torch", "float32", "float32")

        ort = info["ort"]["runtime"]
        assert ort["forward_setting"] == "onnxruntime" and ort["forward"] == "onnxruntime"
        assert ort["max_abs_logit_diff_onnxruntime"] < 1e-4 and ort["onnxruntime_threads"] >= 1
        assert "gradient calls on torch" in ort["forward_reason"]
        assert any(n.startswith("forward onnxruntime:") for n in info["ort"]["notes"])
        assert info["ort"]["samplers"]["rep"]["supported"] is True  # ∇z still comes from torch

        bf16 = info["bf16"]["runtime"]
        assert bf16["precision_setting"] == "bfloat16" and bf16["precision"] == "bfloat16"
        assert bf16["max_abs_logit_diff_bfloat16"] >= 0 and "max_abs_grad_diff_bfloat16" in bf16
        assert any(n.startswith("precision bfloat16:") for n in info["bf16"]["notes"])

        samples = {}
        for name in LEVERS:
            for sampler in ("mh", "rep"):
                r = await client.post(f"/v1/samples/{sampler}", json={"model": name, "n": 4, "steps": 8, "seed": 3})
                assert r.status_code == 200, r.text
                samples[name, sampler] = r.json()
        plain_rep, ort_rep = samples["plain", "rep"]["samples"], samples["ort", "rep"]["samples"]
        pairs = [(a, b) for ra, rb in zip(plain_rep, ort_rep, strict=True) for a, b in zip(ra, rb, strict=True)]
        assert max(abs(a - b) for a, b in pairs) < 1e-4
