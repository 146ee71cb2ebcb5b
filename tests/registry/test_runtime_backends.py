"""``[runtime] forward = "onnxruntime"`` and ``precision = "bfloat16"``: what loads, what is served, what is refused.

onnxruntime must agree with torch within the float32 tolerance (G's output and the logits) and leave ∇z to torch,
bit-identical to ``forward = "torch"``; bfloat16 is recorded against float32 and refused only when it makes probe
results non-finite. Models: the toy MLPs of ``tests.registry.helpers`` (safetensors, torch_export, onnx), a copy of
``models/digits-dcgan`` (conv, channels_last by ``auto``) and ``models/gaussians25`` (the MLP demo).
"""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from service.registry import LoadedModel, ManifestError, load_version
from service.registry import runtime as rt
from service.registry import runtime_backends as rb
from service.registry.runtime_backends import OrtForward
from service.samplers import SAMPLERS
from service.samplers.driver import run_chains
from service.samplers.rng import Streams
from tests.registry.helpers import NX, NZ, make_version, read_toml, save_network, with_runtime, write_manifest

MODELS = Path(__file__).resolve().parents[2] / "models"
ARCH = "tests.registry.test_runtime_backends"
ORT_TOL = 1e-4
"""What the load check allows (runtime.LOGIT_ATOL + LOGIT_RTOL * |logit|, logits of these models are < 30)."""


class Bf16BreaksD(nn.Module):
    """x (B, nx) -> log(h - 1) with h = 1 + 1e-3: finite in float32, log(0) = -inf once h is rounded to bf16."""

    def __init__(self, nx: int = NX) -> None:
        super().__init__()
        self.lin = nn.Linear(nx, 1)
        nn.init.zeros_(self.lin.weight)
        nn.init.constant_(self.lin.bias, 1.001)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.lin(x).squeeze(1) - 1.0)


def _toy(root: Path, runtime: dict[str, Any] | None, fmt: str = "safetensors", d_fmt: str | None = None) -> Path:
    return with_runtime(make_version(root, g_format=fmt, d_format=d_fmt or fmt), runtime)


def _demo(root: Path, name: str, runtime: dict[str, Any] | None) -> Path:
    vdir = root / name / "1"
    shutil.copytree(MODELS / name / "1", vdir)
    return with_runtime(vdir, runtime)


def _z(model: LoadedModel, batch: int, seed: int = 3) -> Tensor:
    return torch.randn(batch, *model.pair.latent_shape, generator=torch.Generator().manual_seed(seed))


def _forward(model: LoadedModel, z: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        x = model.pair.generator(z)
        return x, model.pair.logit(x)


def _grad(model: LoadedModel, z: Tensor) -> tuple[Tensor, Tensor]:
    """(logit, ∇z of the summed logit) as the gradient samplers take them."""
    zg = z.clone().requires_grad_(True)
    logit = model.pair.logit(model.pair.generator(zg))
    (grad,) = torch.autograd.grad(logit.sum(), zg)
    return logit.detach(), grad


class _Counting:
    """An onnxruntime session that counts its runs."""

    def __init__(self, session: Any) -> None:
        self.session, self.runs = session, 0

    def run(self, *args: Any) -> Any:
        self.runs += 1
        return self.session.run(*args)


def _count_ort(model: LoadedModel) -> list[_Counting]:
    fns = [f for f in (model.pair.generator, model.raw_logit) if isinstance(f, OrtForward)]
    counters = []
    for fn in fns:
        fn.session = _Counting(fn.session)
        counters.append(fn.session)
    return counters


# ---------------------------------------------------------------------------------------------------------------
# manifest


def test_defaults_are_torch_and_float32(tmp_path: Path) -> None:
    model = load_version(_toy(tmp_path, None))
    assert model.manifest.runtime.forward == "torch" and model.manifest.runtime.precision == "float32"
    info = model.runtime
    assert (info["forward_setting"], info["forward"], info["precision_setting"], info["precision"]) == (
        "torch", "torch", "float32", "float32")
    assert not isinstance(model.pair.generator, OrtForward)
    assert not any(n.startswith(("forward", "precision")) for n in model.notes)


@pytest.mark.parametrize(
    ("runtime", "field", "words"),
    [
        ({"forward": "ort"}, "runtime.forward", ["'ort'", "'torch'", "'onnxruntime'"]),
        ({"precision": "fp16"}, "runtime.precision", ["'fp16'", "'float32'", "'bfloat16'"]),
        ({"precision": "tf32"}, "runtime.precision", ["'tf32'", "'float32'", "'bfloat16'"]),
        ({"forward": "onnxruntime", "compile": True}, "runtime.forward",
         ["forward = 'onnxruntime'", "compile = true", "exclude each other", "compile = false"]),
        ({"precision": "bfloat16", "compile": True}, "runtime.precision",
         ["precision = 'bfloat16'", "compile = true", "exclude each other", "precision = 'float32'"]),
        ({"precision": "bfloat16", "forward": "onnxruntime"}, "runtime.forward",
         ["forward = 'onnxruntime'", "precision = 'bfloat16'", "exclude each other"]),
    ],
)
def test_bad_values_and_combinations_name_the_field_value_and_what_is_allowed(
    tmp_path: Path, runtime: dict[str, Any], field: str, words: list[str]
) -> None:
    vdir = _toy(tmp_path, runtime)
    with pytest.raises(ManifestError) as err:
        load_version(vdir)
    assert err.value.field == field and str(vdir / "model.toml") in str(err.value)
    for word in words:
        assert word in err.value.message, err.value.message


@pytest.mark.parametrize(("runtime", "field"), [({"forward": "onnxruntime"}, "runtime.forward"),
                                                ({"precision": "bfloat16"}, "runtime.precision")])
def test_levers_on_two_onnx_graphs_are_refused(tmp_path: Path, runtime: dict[str, Any], field: str) -> None:
    with pytest.raises(ManifestError) as err:
        load_version(_toy(tmp_path, runtime, fmt="onnx"))
    assert err.value.field == field and "'onnx'" in err.value.message
    assert f"{field.split('.')[1]} = " in err.value.message


# ---------------------------------------------------------------------------------------------------------------
# forward = "onnxruntime"


@pytest.mark.parametrize("fmt", ["safetensors", "torch_export"])
def test_onnxruntime_serves_forward_calls_within_tolerance_and_grad_calls_from_torch(tmp_path: Path, fmt: str) -> None:
    ref = load_version(_toy(tmp_path / "a", None, fmt=fmt))
    ort = load_version(_toy(tmp_path / "b", {"forward": "onnxruntime"}, fmt=fmt))
    info = ort.runtime
    assert info["forward_setting"] == "onnxruntime" and info["forward"] == "onnxruntime", ort.notes
    assert info["onnxruntime_threads"] == torch.get_num_threads() and info["onnxruntime_model_bytes"] > 0
    assert ort.memory_bytes == ref.memory_bytes + info["onnxruntime_model_bytes"]  # the second copy is counted
    assert 0 <= info["max_abs_logit_diff_onnxruntime"] < ORT_TOL
    assert 0 <= info["max_abs_output_diff_onnxruntime"] < ORT_TOL
    assert any(n.startswith("forward onnxruntime: G and D forward-only on onnxruntime") for n in ort.notes)
    json.dumps(info, allow_nan=False)
    assert isinstance(ort.pair.generator, OrtForward) and isinstance(ort.raw_logit, OrtForward)
    for fn in (ort.pair.generator, ort.raw_logit):
        opts = fn.session.get_session_options()
        assert opts.intra_op_num_threads == torch.get_num_threads() and opts.inter_op_num_threads == 1
        assert fn.session.get_providers() == ["CPUExecutionProvider"]
    counters = _count_ort(ort)
    for batch in (1, 5, 300):
        z = _z(ref, batch)
        (x0, l0), (x1, l1) = _forward(ref, z), _forward(ort, z)
        assert x1.dtype == torch.float32 and l1.shape == l0.shape == (batch,)
        assert float((x0 - x1).abs().max()) < ORT_TOL and float((l0 - l1).abs().max()) < ORT_TOL
    assert [c.runs for c in counters] == [3, 3]  # every no_grad call went to onnxruntime
    for batch in (1, 16):
        z = _z(ref, batch, seed=5)
        (l0, g0), (l1, g1) = _grad(ref, z), _grad(ort, z)
        assert torch.equal(l0, l1) and torch.equal(g0, g1) and float(g0.abs().sum()) > 0  # torch, bit for bit
    assert [c.runs for c in counters] == [3, 3]  # the gradient calls did not touch onnxruntime
    assert ort.supports("rep") == (True, None) and ort.pair.differentiable


def test_onnxruntime_after_channels_last_on_a_conv_model(tmp_path: Path) -> None:
    ref = load_version(_demo(tmp_path / "a", "digits-dcgan", None))
    ort = load_version(_demo(tmp_path / "b", "digits-dcgan", {"forward": "onnxruntime"}))
    assert ort.runtime["memory_format"] == "channels_last" and ort.runtime["forward"] == "onnxruntime", ort.notes
    z = _z(ref, 32)
    (x0, l0), (x1, l1) = _forward(ref, z), _forward(ort, z)
    assert x1.is_contiguous() and float((x0 - x1).abs().max()) < ORT_TOL and float((l0 - l1).abs().max()) < ORT_TOL
    (gl0, g0), (gl1, g1) = _grad(ref, z), _grad(ort, z)
    assert torch.equal(gl0, gl1) and torch.equal(g0, g1)
    assert ref.pair.real_logit is not None and ort.pair.real_logit is not None
    assert float((ref.pair.real_logit - ort.pair.real_logit).abs().max()) < ORT_TOL


def test_onnxruntime_exports_only_the_torch_network_of_a_mixed_pair(tmp_path: Path) -> None:
    model = load_version(_toy(tmp_path, {"forward": "onnxruntime"}, fmt="onnx", d_fmt="safetensors"))
    assert model.runtime["forward"] == "onnxruntime" and "of D run on onnxruntime" in model.runtime["forward_reason"]
    assert isinstance(model.raw_logit, OrtForward) and not isinstance(model.pair.generator, OrtForward)


def test_onnxruntime_fallbacks_keep_torch_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_onnxruntime(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    def broken_export(fn: Any, example: Tensor) -> bytes:
        raise RuntimeError("Exporting the operator 'aten::weird' to ONNX is not supported")

    cases: list[tuple[Any, str, Any, str]] = [
        (builtins, "__import__", no_onnxruntime, "onnxruntime is not installed"),
        (rb, "export_onnx", broken_export, "RuntimeError: Exporting the operator 'aten::weird'"),
        (rt, "LOGIT_ATOL", -1.0, "onnxruntime changes G's output by"),  # any difference is too much
    ]
    for i, (module, attr, value, why) in enumerate(cases):
        with monkeypatch.context() as mp:
            mp.setattr(module, attr, value)
            model = load_version(_toy(tmp_path / str(i), {"forward": "onnxruntime"}))
        info = model.runtime
        assert info["forward_setting"] == "onnxruntime" and info["forward"] == "torch", info
        assert why in info["forward_reason"], info["forward_reason"]
        note = f"forward onnxruntime: torch ({info['forward_reason']})"
        assert [n for n in model.notes if n.startswith("forward")] == [note]
        assert not isinstance(model.pair.generator, OrtForward) and not isinstance(model.raw_logit, OrtForward)
        assert "max_abs_logit_diff_onnxruntime" not in info
        json.dumps(info, allow_nan=False)


def test_onnxruntime_is_cpu_only() -> None:
    def fn(x: Tensor) -> Tensor:
        return x

    nets: Any = (None, None)  # never looked at: the device decides first
    g, d, notes, info = rb.apply_onnxruntime("m@1", nets, (fn, fn), "cuda:0", torch.zeros, rt._check, (0.0, 0.0))
    assert g is fn and d is fn and info["forward"] == "torch"
    assert notes == ["forward onnxruntime: torch (onnxruntime forward runs on CPU only; device 'cuda:0' keeps torch)"]


def test_ort_forward_routes_by_whether_a_gradient_can_flow() -> None:
    calls: list[str] = []

    class Session:
        def get_inputs(self) -> list[Any]:
            return [type("I", (), {"name": "x"})()]

        def run(self, _: Any, feeds: dict[str, Any]) -> list[Any]:
            calls.append("ort")
            return [feeds["x"] * 2]

    def torch_fn(x: Tensor) -> Tensor:
        calls.append("torch")
        return x * 2

    fn = OrtForward(Session(), torch_fn, "toy")
    x = torch.ones(3, 2)
    with torch.no_grad():
        fn(x)
        fn(x.clone().requires_grad_(True))  # no graph under no_grad
    fn(x)  # grad mode on, but nothing requires grad
    fn(x.clone().requires_grad_(True))
    fn(torch.ones(0, 2))
    assert calls == ["ort", "ort", "ort", "torch", "torch"]


# ---------------------------------------------------------------------------------------------------------------
# precision = "bfloat16"


@pytest.mark.parametrize("fmt", ["safetensors", "torch_export"])
def test_bfloat16_runs_under_autocast_records_the_difference_and_keeps_gradients(tmp_path: Path, fmt: str) -> None:
    ref = load_version(_toy(tmp_path / "a", None, fmt=fmt))
    bf = load_version(_toy(tmp_path / "b", {"precision": "bfloat16"}, fmt=fmt))
    info = bf.runtime
    assert info["precision_setting"] == "bfloat16" and info["precision"] == "bfloat16"
    assert 0 < info["max_abs_logit_diff_bfloat16"] < 0.1 * max(1.0, info["max_abs_logit_float32"])
    assert info["max_abs_grad_diff_bfloat16"] > 0 and info["max_abs_grad_float32"] > 0
    assert any(n.startswith("precision bfloat16: G and D under bf16 autocast; max |Δ logit|") for n in bf.notes)
    json.dumps(info, allow_nan=False)
    z = _z(ref, 64)
    (_, l0), (x1, l1) = _forward(ref, z), _forward(bf, z)
    assert x1.dtype == torch.float32 and l1.dtype == torch.float32
    assert 0 < float((l0 - l1).abs().max()) < 0.1 * max(1.0, float(l0.abs().max()))
    (_, g0), (_, g1) = _grad(ref, z), _grad(bf, z)
    assert g1.dtype == torch.float32 and bool(torch.isfinite(g1).all()) and float(g1.abs().sum()) > 0
    cos = torch.nn.functional.cosine_similarity(g0.flatten(), g1.flatten(), dim=0)
    assert float(cos) > 0.9  # the same direction, roughly
    assert bf.supports("rep") == (True, None)


def test_bfloat16_on_a_mixed_pair_casts_the_torch_network_only(tmp_path: Path) -> None:
    model = load_version(_toy(tmp_path, {"precision": "bfloat16"}, fmt="onnx", d_fmt="safetensors"))
    info = model.runtime
    assert info["precision"] == "bfloat16" and info["precision_reason"].startswith("bf16 autocast on D;")
    assert "max_abs_grad_diff_bfloat16" not in info and not model.pair.differentiable  # an onnx G: forward only
    assert any(n.startswith("precision bfloat16: D under bf16 autocast") for n in model.notes)


def test_bfloat16_that_makes_probe_logits_non_finite_is_refused(tmp_path: Path) -> None:
    vdir = make_version(tmp_path)
    manifest = read_toml(vdir)
    manifest["discriminator"] = {
        **save_network(Bf16BreaksD(), f"{ARCH}:Bf16BreaksD", {}, "safetensors", vdir / "d.safetensors", (NX,)),
        "output": "logit",
    }
    write_manifest(vdir, manifest)
    assert load_version(vdir).runtime["precision"] == "float32"  # finite in float32
    with_runtime(vdir, {"precision": "bfloat16"})
    with pytest.raises(ManifestError) as err:
        load_version(vdir)
    assert err.value.field == "runtime.precision"
    assert "'bfloat16' makes logits non-finite on 64 of 64 probe latents" in err.value.message
    assert "precision = 'float32'" in err.value.message


def test_bfloat16_on_a_device_without_autocast_stays_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)

    def fn(x: Tensor) -> Tensor:
        return x

    nets: Any = (None, None)  # never looked at: autocast availability decides first
    g, d, notes, info = rb.apply_bfloat16(Path("m.toml"), nets, (fn, fn), "cpu", torch.zeros(2, NZ), rt._forward, None)
    assert g is fn and d is fn and info["precision"] == "float32"
    assert notes == ["precision bfloat16: float32 (no autocast on device type 'cpu')"]


# ---------------------------------------------------------------------------------------------------------------
# end to end: an mh request on the MLP demo


def _mh(model: LoadedModel, chains: int = 64, steps: int = 16) -> Any:
    entry = SAMPLERS["mh"]
    algo = entry.cls(model.pair, entry.options_cls())
    return run_chains(algo, Streams.for_request(7, chains, "cpu"), algo.make_params({}, chains, "cpu"), steps)


def test_an_mh_run_on_onnxruntime_matches_torch_and_bfloat16_changes_it(tmp_path: Path) -> None:
    ref = _mh(load_version(_demo(tmp_path / "a", "gaussians25", None)))
    ort = _mh(load_version(_demo(tmp_path / "b", "gaussians25", {"forward": "onnxruntime"})))
    assert torch.equal(ref.stats.accepted, ort.stats.accepted)  # the same accept / reject decisions
    assert float((ref.output.x - ort.output.x).abs().max()) < ORT_TOL
    assert float((ref.output.logit - ort.output.logit).abs().max()) < ORT_TOL
    bf = _mh(load_version(_demo(tmp_path / "c", "gaussians25", {"precision": "bfloat16"})))
    assert bool(torch.isfinite(bf.output.logit).all()) and int(bf.stats.nonfinite.sum()) == 0
    # bf16 moves the MLP's logits by up to ~1 (runtime_results.md): decisions and samples change, documented there
    assert not torch.equal(ref.stats.accepted, bf.stats.accepted)
    rate = float(ref.stats.accepted.sum()) / float(ref.stats.proposals.sum())
    rate_bf = float(bf.stats.accepted.sum()) / float(bf.stats.proposals.sum())
    assert abs(rate - rate_bf) < 0.15, (rate, rate_bf)
