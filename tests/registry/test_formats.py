"""Every weight format and every discriminator output kind loads into a frozen, eval-mode GanPair."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from service.registry import ManifestError, load_version
from service.registry.heads import PROB_CLAMP
from tests.registry.helpers import NX, NZ, make_version

FORMATS = ["safetensors", "state_dict", "torch_export", "onnx"]


def _check_pair(vdir: Path) -> None:
    model = load_version(vdir)
    z = torch.randn(5, NZ)
    x = model.pair.generator(z)
    assert x.shape == (5, NX)
    logit = model.pair.logit(x)
    assert logit.shape == (5,) and bool(torch.isfinite(logit).all())
    assert model.pair.real is not None and model.pair.real_logit is not None
    assert model.pair.real_logit.shape == (model.pair.real.shape[0],)
    assert model.memory_bytes > 0
    assert model.load_seconds > 0


@pytest.mark.parametrize("g_format", FORMATS)
@pytest.mark.parametrize("d_format", FORMATS)
def test_every_format_pair_loads(root: Path, g_format: str, d_format: str) -> None:
    _check_pair(make_version(root, g_format=g_format, d_format=d_format))


@pytest.mark.parametrize("fmt", ["safetensors", "state_dict", "torch_export"])
def test_torch_formats_are_frozen_eval_and_differentiable_in_z(root: Path, fmt: str) -> None:
    model = load_version(make_version(root, g_format=fmt, d_format=fmt))
    for net in model.networks.values():
        module = net.module
        assert isinstance(module, nn.Module)
        assert all(not p.requires_grad for p in module.parameters())
        if not isinstance(module, torch.fx.GraphModule):
            assert not any(m.training for m in module.modules())
    assert model.pair.differentiable
    z = torch.randn(4, NZ, requires_grad=True)
    (g,) = torch.autograd.grad(model.pair.logit(model.pair.generator(z)).sum(), z)
    assert g.shape == (4, NZ) and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    # eval mode: a row's output does not depend on the rest of the batch (BatchNorm running stats)
    z = torch.randn(6, NZ)
    with torch.no_grad():
        assert torch.allclose(model.pair.generator(z)[:1], model.pair.generator(z[:1]), atol=1e-6)


def test_torch_export_matches_the_original_module_and_its_gradients(root: Path) -> None:
    ref = load_version(make_version(root, name="ref", g_format="safetensors", d_format="safetensors"))
    exp = load_version(make_version(root, name="exp", g_format="torch_export", d_format="torch_export"))
    z = torch.randn(7, NZ, requires_grad=True)
    (g1,) = torch.autograd.grad(ref.pair.logit(ref.pair.generator(z)).sum(), z)
    (g2,) = torch.autograd.grad(exp.pair.logit(exp.pair.generator(z)).sum(), z)
    assert torch.allclose(g1, g2, atol=1e-5)


def test_onnx_is_forward_only_and_refuses_gradient_samplers(root: Path) -> None:
    model = load_version(make_version(root, g_format="onnx", d_format="onnx"))
    assert not model.pair.differentiable
    assert model.backends == {"generator": "onnxruntime", "discriminator": "onnxruntime"}
    for name in ("rep", "ddls"):
        ok, reason = model.supports(name)
        assert not ok
        assert reason is not None and "∇z" in reason and "onnxruntime" in reason
    for name in ("raw", "mh", "drs", "sir"):
        assert model.supports(name) == (True, None)
    assert model.supports("nope")[0] is False


def test_mixed_onnx_generator_makes_the_pair_forward_only(root: Path) -> None:
    model = load_version(make_version(root, g_format="onnx", d_format="torch_export"))
    assert not model.pair.differentiable
    assert model.supports("rep")[0] is False


@pytest.mark.parametrize(("role", "batch"), [("generator", 2), ("generator", 1), ("discriminator", 2)])
def test_onnx_exported_with_a_fixed_batch_is_refused_with_the_fix(root: Path, role: str, batch: int) -> None:
    """An ONNX network exported without a dynamic batch axis (the exporter's default) is named as such at load,
    whichever fixed batch it has, instead of failing later in the server's warm-up or its first request."""
    from service.registry.files import sha256_file
    from tests.registry.helpers import read_toml, write_manifest
    from tests.registry.toy_arch import ToyD, ToyG

    vdir = make_version(root, g_format="onnx", d_format="onnx")
    net, width = (ToyG(NZ, NX), NZ) if role == "generator" else (ToyD(nx=NX), NX)
    f = vdir / f"{role}.onnx"
    torch.onnx.export(net.eval(), (torch.randn(batch, width),), str(f), input_names=["x"], output_names=["y"],
                      dynamo=False)
    manifest = read_toml(vdir)
    manifest[role]["sha256"] = sha256_file(f)
    write_manifest(vdir, manifest)
    with pytest.raises(ManifestError) as err:
        load_version(vdir)
    assert err.value.field == f"{role}.file", str(err.value)
    assert "fixed batch size" in str(err.value) and "dynamic_axes" in str(err.value)


def _original_probability(vdir: Path, d_format: str, x: torch.Tensor) -> torch.Tensor:
    """D as the user saved it (sigmoid included), loaded without the registry."""
    from safetensors.torch import load_file

    from tests.registry.toy_arch import ToyD

    if d_format == "torch_export":
        return torch.export.load(str(vdir / "discriminator.pt2")).module()(x)
    d = ToyD(nx=NX, sigmoid=True).eval()
    f = vdir / ("discriminator.safetensors" if d_format == "safetensors" else "discriminator.pth")
    d.load_state_dict(load_file(str(f)) if d_format == "safetensors" else torch.load(f, weights_only=True))
    return d(x)


@pytest.mark.parametrize("d_format", ["safetensors", "state_dict", "torch_export"])
def test_probability_output_has_its_sigmoid_stripped(root: Path, d_format: str) -> None:
    vdir = make_version(root, name="p", d_format=d_format, d_output="probability", seed=3)
    prob = load_version(vdir)
    assert any("sigmoid" in n and "removed" in n for n in prob.notes), prob.notes
    torch.manual_seed(0)
    x = torch.randn(64, NX) * 4
    with torch.no_grad():
        logit = prob.raw_logit(x)
        p = _original_probability(vdir, d_format, x)
    assert logit.shape == (64,)
    assert torch.allclose(torch.sigmoid(logit), p, atol=1e-6)
    with torch.no_grad():
        far = prob.raw_logit(torch.randn(64, NX) * 1e3)
    assert float(far.abs().max()) > 14  # exact logits: converted probabilities would saturate at ±13.8


def test_probability_without_a_sigmoid_module_is_converted_with_a_note(root: Path) -> None:
    model = load_version(make_version(root, d_output="probability", d_class="ToyDFunctionalSigmoid"))
    assert any("clamped probabilities" in n for n in model.notes)
    out = model.raw_logit(torch.randn(64, NX) * 100)
    limit = torch.logit(torch.tensor(1 - PROB_CLAMP, dtype=torch.float64)).item()
    assert bool(torch.isfinite(out).all()) and float(out.abs().max()) <= limit + 1e-3


def test_onnx_probability_has_its_sigmoid_node_stripped(root: Path) -> None:
    ref = load_version(make_version(root, name="ref", d_format="safetensors", d_output="probability", seed=5))
    model = load_version(make_version(root, name="onnx", d_format="onnx", d_output="probability", seed=5))
    assert any("sigmoid" in n and "removed" in n for n in model.notes), model.notes
    x = torch.randn(16, NX) * 1e3
    with torch.no_grad():
        assert torch.allclose(model.raw_logit(x), ref.raw_logit(x), rtol=1e-4, atol=1e-3)
    assert float(model.raw_logit(x).abs().max()) > 14


def test_critic_needs_a_calibration(root: Path) -> None:
    with pytest.raises(ManifestError) as err:
        load_version(make_version(root, name="c", d_output="critic"))
    assert err.value.field == "calibration"
    cal = {"method": "platt", "a": 0.5, "b": 1.0}
    model = load_version(make_version(root, name="cc", d_output="critic", calibration=cal))
    assert model.calibrated
    x = torch.randn(4, NX)
    assert torch.allclose(model.pair.logit(x), 0.5 * model.raw_logit(x) + 1.0)
    with pytest.raises(ManifestError) as err:
        load_version(make_version(root, name="ci", d_output="critic", calibration={"method": "identity"}))
    assert err.value.field == "calibration.method"


def test_logit_output_uncalibrated_by_default(toy: Path) -> None:
    model = load_version(toy)
    assert not model.calibrated
    x = torch.randn(4, NX)
    assert torch.equal(model.pair.logit(x), model.raw_logit(x))


def test_sampler_defaults_come_from_the_manifest(root: Path) -> None:
    model = load_version(
        make_version(root, samplers={"rep": {"steps": 64, "step_size": 0.02}, "drs": {"logit_max": 3.5}})
    )
    assert model.sampler_defaults("rep") == {"steps": 64, "step_size": 0.02}
    assert model.sampler_defaults("drs") == {"logit_max": 3.5}
    assert model.sampler_defaults("mh") == {}


def test_onnx_provider_actually_in_use_is_checked(root: Path) -> None:
    """Asking for CUDA where onnxruntime can only run on CPU must fail loudly, not silently run on CPU."""
    import onnxruntime as ort

    from service.registry import ProviderError
    from service.registry.loaders import load_onnx

    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        pytest.skip("CUDA provider available: nothing to refuse")
    vdir = make_version(root, g_format="onnx", d_format="onnx")
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        load_onnx(vdir / "generator.onnx", "cuda", vdir / "model.toml", "generator")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fmt", ["safetensors", "torch_export"])
def test_loads_on_cuda_with_gradients(root: Path, fmt: str) -> None:
    model = load_version(make_version(root, g_format=fmt, d_format=fmt), device="cuda")
    z = torch.randn(4, NZ, device="cuda", requires_grad=True)
    (g,) = torch.autograd.grad(model.pair.logit(model.pair.generator(z)).sum(), z)
    assert g.device.type == "cuda" and model.pair.real is not None and model.pair.real.device.type == "cuda"


def test_an_arch_module_edited_after_import_is_named_at_the_next_load(root: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Python imports a module once: a version loaded after its arch's source changed still runs the old code, and
    its notes say so (with the fix: restart), instead of serving stale code silently."""
    import os
    import time

    from tests.registry.helpers import read_toml, write_manifest

    code = tmp_path / "code"
    code.mkdir()
    source = code / "user_arch_edited.py"
    source.write_text("from tests.registry.toy_arch import ToyG\n\n\nclass G(ToyG):\n    pass\n")
    monkeypatch.syspath_prepend(str(code))
    vdir = make_version(root)
    manifest = read_toml(vdir)
    manifest["generator"]["arch"] = "user_arch_edited:G"
    write_manifest(vdir, manifest)
    assert not [n for n in load_version(vdir).notes if "changed after this server imported it" in n]
    later = time.time() + 5
    os.utime(source, (later, later))
    notes = [n for n in load_version(vdir).notes if "changed after this server imported it" in n]
    assert len(notes) == 1 and notes[0].startswith("generator.arch: ") and "restart the server" in notes[0]
