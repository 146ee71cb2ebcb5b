"""``[runtime]`` in model.toml: memory format and torch.compile keep logits and ∇z equal to the contiguous eager load.

Models: the 16x16 conv demo ``models/digits-dcgan`` (copied to tmp_path with a ``[runtime]`` table), the toy MLPs of
``tests.registry.helpers``, and tiny conv nets below (importable as ``tests.registry.test_runtime:<Class>``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from service.registry import LoadedModel, ManifestError, load_version
from service.registry import runtime as rt
from service.registry.calibrate import calibrate_version
from service.registry.runtime import CompiledFn
from tests.registry.helpers import NZ, make_version, read_toml, save_network, with_runtime, write_manifest

MODELS = Path(__file__).resolve().parents[2] / "models"
DIGITS = MODELS / "digits-dcgan" / "1"
LOGIT_TOL = 1e-4
GRAD_TOL = 1e-4
ARCH = "tests.registry.test_runtime"


class TinyConvG(nn.Module):
    """z (B, 4, 1, 1) -> x (B, 3, 8, 8) in [-1, 1] (3 channels: channels_last output is not contiguous)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(4, 8, 4), nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class FlatD(nn.Module):
    """A conv D: x (B, 3, 8, 8) -> (B,) logit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lin = nn.Linear(4 * 8 * 8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(torch.relu(self.conv(x)).flatten(1)).squeeze(1)


class NanConvG(TinyConvG):
    """TinyConvG giving NaN images for latents with z[0] > 1 (a generator that blows up in part of the space)."""

    def forward(self, z: Tensor) -> Tensor:
        x = self.net(z)
        return torch.where(z[:, :1] > 1.0, torch.full_like(x, float("nan")), x)


class LinearG(nn.Module):
    """z (B, 4, 1, 1) -> x (B, 3, 8, 8) in [-1, 1] without conv layers (an image model with 2-D weights only)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3 * 8 * 8)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.lin(z.flatten(1))).reshape(-1, 3, 8, 8)


class MlpD(nn.Module):
    """An MLP D: x (B, 3, 8, 8) -> (B,) logit."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 8 * 8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x.flatten(1)).squeeze(1)


class ViewD(FlatD):
    """As FlatD, but flattens with ``.view``, which fails on channels_last activations."""

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x))
        return self.lin(h.view(h.shape[0], -1)).squeeze(1)


def _digits(root: Path, runtime: dict[str, Any] | None) -> Path:
    """A copy of digits-dcgan@1 under ``root`` with ``[runtime]`` = ``runtime`` (none when None)."""
    vdir = root / "digits-dcgan" / "1"
    shutil.copytree(DIGITS, vdir)
    return with_runtime(vdir, runtime)


def _tiny_conv(root: Path, runtime: dict[str, Any], d_class: str, g_class: str = "TinyConvG") -> Path:
    """A tiny image model ``tiny@1`` (``g_class`` and ``d_class`` of this module) without holdout."""
    torch.manual_seed(0)
    vdir = root / "tiny" / "1"
    vdir.mkdir(parents=True)
    manifest = {
        "name": "tiny",
        "version": 1,
        "latent": {"shape": [4, 1, 1]},
        "output": {"kind": "image", "shape": [3, 8, 8], "range": [-1.0, 1.0]},
        "generator": save_network(globals()[g_class](), f"{ARCH}:{g_class}", {}, "safetensors", vdir / "g.safetensors",
                                  ()),
        "discriminator": save_network(globals()[d_class](), f"{ARCH}:{d_class}", {}, "safetensors",
                                      vdir / "d.safetensors", ()),
        "runtime": runtime,
    }
    write_manifest(vdir, manifest)
    return vdir


def _outputs(model: LoadedModel, batch: int = 16, seed: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    """(x, calibrated logit, ∇z of the summed logit) at ``batch`` seeded latents."""
    z = torch.randn(batch, *model.pair.latent_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        x = model.pair.generator(z)
        logit = model.pair.logit(x)
    zg = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.pair.logit(model.pair.generator(zg)).sum(), zg)
    return x, logit, grad


def _assert_same(a: LoadedModel, b: LoadedModel) -> None:
    for batch in (1, 16):
        (xa, la, ga), (xb, lb, gb) = _outputs(a, batch), _outputs(b, batch)
        assert xb.is_contiguous() and xb.shape == xa.shape
        assert float((xa - xb).abs().max()) < LOGIT_TOL
        assert float((la - lb).abs().max()) < LOGIT_TOL
        assert float((ga - gb).abs().max()) < GRAD_TOL * max(1.0, float(ga.abs().max()))
        assert float(ga.abs().sum()) > 0
    assert a.pair.real_logit is not None and b.pair.real_logit is not None
    assert float((a.pair.real_logit - b.pair.real_logit).abs().max()) < LOGIT_TOL


def _is_channels_last(w: Tensor) -> bool:
    """Laid out channels_last and not plain contiguous (a weight with one input channel is both)."""
    assert w.shape[1] > 1 and w.shape[2] * w.shape[3] > 1
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def _conv_weights(model: LoadedModel) -> list[Tensor]:
    """4-D weights with more than one input channel (only those differ between the layouts)."""
    return [p for net in model.networks.values() if net.module is not None
            for p in net.module.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]


# ---------------------------------------------------------------------------------------------------------------
# manifest


def test_runtime_defaults_to_auto_without_compile(tmp_path: Path) -> None:
    model = load_version(make_version(tmp_path))
    assert model.manifest.runtime.memory_format == "auto" and model.manifest.runtime.compile is False
    assert model.runtime["memory_format"] == "contiguous" and model.runtime["compile"] is False
    assert model.runtime["memory_format_reason"] == "output is not an image (C, H, W)"
    assert "max_abs_logit_diff_channels_last" not in model.runtime  # an MLP is not even probed
    assert not any("memory_format" in n for n in model.notes)


@pytest.mark.parametrize(
    ("runtime", "field", "words"),
    [
        ({"memory_format": "cl"}, "runtime.memory_format", ["'cl'", "'auto'", "'contiguous'", "'channels_last'"]),
        ({"compile": "yes"}, "runtime.compile", ["'yes'", "boolean"]),
        ({"compile": 1}, "runtime.compile", ["1", "boolean"]),
        ({"workers": 2}, "runtime.workers", ["unknown field"]),
    ],
)
def test_bad_runtime_values_name_the_file_field_value_and_what_is_allowed(
    tmp_path: Path, runtime: dict[str, Any], field: str, words: list[str]
) -> None:
    vdir = make_version(tmp_path)
    manifest = read_toml(vdir)
    manifest["runtime"] = runtime
    write_manifest(vdir, manifest)
    with pytest.raises(ManifestError) as err:
        load_version(vdir)
    assert err.value.field == field
    assert str(vdir / "model.toml") in str(err.value)
    for word in words:
        assert word in err.value.message, err.value.message


@pytest.mark.parametrize(("g_format", "d_format"), [("onnx", "safetensors"), ("safetensors", "onnx")])
def test_compile_is_refused_for_onnx(tmp_path: Path, g_format: str, d_format: str) -> None:
    vdir = make_version(tmp_path, g_format=g_format, d_format=d_format)
    manifest = read_toml(vdir)
    manifest["runtime"] = {"compile": True}
    write_manifest(vdir, manifest)
    with pytest.raises(ManifestError) as err:
        load_version(vdir)
    assert err.value.field == "runtime.compile"
    assert "onnx" in err.value.message and "compile = false" in err.value.message


def test_calibrate_keeps_the_runtime_table(tmp_path: Path) -> None:
    vdir = make_version(tmp_path)
    manifest = read_toml(vdir)
    manifest["runtime"] = {"memory_format": "contiguous"}
    write_manifest(vdir, manifest)
    calibrate_version(vdir, fakes=64, pilot=64)
    after = read_toml(vdir)
    assert after["runtime"] == {"memory_format": "contiguous"} and "calibration" in after


# ---------------------------------------------------------------------------------------------------------------
# memory format


def test_channels_last_gives_the_contiguous_results(tmp_path: Path) -> None:
    ref = load_version(_digits(tmp_path / "a", {"memory_format": "contiguous"}))
    cl = load_version(_digits(tmp_path / "b", {"memory_format": "channels_last"}))
    assert cl.runtime["memory_format"] == "channels_last" and ref.runtime["memory_format"] == "contiguous"
    assert all(_is_channels_last(w) for w in _conv_weights(cl))
    assert all(w.is_contiguous() for w in _conv_weights(ref))
    assert any("channels_last" in n for n in cl.notes)
    _assert_same(ref, cl)
    assert cl.supports("rep") == (True, None)


def test_auto_gives_a_conv_image_model_channels_last_without_timing_it(tmp_path: Path) -> None:
    ref = load_version(_digits(tmp_path / "a", {"memory_format": "contiguous"}))
    auto = load_version(_digits(tmp_path / "b", None))
    info = auto.runtime
    assert info["memory_format_setting"] == "auto" and info["memory_format"] == "channels_last"
    assert "conv weights (G and D)" in info["memory_format_reason"]
    assert 0 <= info["max_abs_logit_diff_channels_last"] < LOGIT_TOL
    assert not any(k.startswith("layout_") for k in info)  # nothing was timed
    assert [n for n in auto.notes if n.startswith("memory_format")] == [
        f"memory_format auto: channels_last (conv weights in G and D; max |Δ logit| "
        f"{info['max_abs_logit_diff_channels_last']:.1e} vs contiguous)"
    ]
    assert all(_is_channels_last(w) for w in _conv_weights(auto))
    assert ref.runtime["memory_format_reason"].startswith("pinned") and all(w.is_contiguous() for w in _conv_weights(ref))
    _assert_same(ref, auto)


def test_auto_does_not_depend_on_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock under which every timed interval reads about 1000 s (so no layout could look faster) changes nothing."""
    real = time.perf_counter
    ticks = iter(range(10**9))

    def skewed() -> float:
        return real() + 1000.0 * next(ticks)

    monkeypatch.setattr(time, "perf_counter", skewed)
    auto = load_version(_digits(tmp_path, None))
    assert auto.runtime["memory_format"] == "channels_last"


def test_auto_keeps_an_image_model_without_conv_weights_contiguous(tmp_path: Path) -> None:
    auto = load_version(_tiny_conv(tmp_path, {"memory_format": "auto"}, "MlpD", g_class="LinearG"))
    assert auto.runtime["memory_format"] == "contiguous" and auto.runtime["memory_format_reason"] == rt.NO_CONV
    assert "max_abs_logit_diff_channels_last" not in auto.runtime
    assert not any("memory_format" in n for n in auto.notes)


def test_auto_on_a_conv_generator_with_an_mlp_discriminator_relays_g_only(tmp_path: Path) -> None:
    auto = load_version(_tiny_conv(tmp_path, {"memory_format": "auto"}, "MlpD"))
    assert auto.runtime["memory_format"] == "channels_last" and "(G)" in auto.runtime["memory_format_reason"]
    assert all(_is_channels_last(w) for w in _conv_weights(auto))


def test_nan_rows_neither_pass_nor_break_the_probe_check(tmp_path: Path) -> None:
    """NaN logits compare False with any tolerance: the check is over finite rows, and the record stays JSON."""
    auto = load_version(_tiny_conv(tmp_path, {"memory_format": "auto"}, "FlatD", g_class="NanConvG"))
    info = auto.runtime
    assert info["memory_format"] == "channels_last" and 0 <= info["max_abs_logit_diff_channels_last"] < LOGIT_TOL
    json.dumps(info, allow_nan=False)
    assert rt._diff(torch.tensor([1.0, float("nan")]), torch.tensor([1.5, float("nan")])) == 0.5
    assert rt._diff(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0])) == math.inf
    assert rt._allowed(torch.tensor([1.0, float("nan")]), 0.0, 1.0) == 1.0


def test_loading_twice_gives_the_same_decision_and_bit_identical_logits(tmp_path: Path) -> None:
    first = load_version(_digits(tmp_path / "a", None))
    second = load_version(_digits(tmp_path / "b", None))
    assert first.runtime == second.runtime and first.notes == second.notes
    assert first.runtime["memory_format"] == "channels_last"
    for batch in (1, 16):
        (xa, la, ga), (xb, lb, gb) = _outputs(first, batch), _outputs(second, batch)
        assert torch.equal(xa, xb) and torch.equal(la, lb) and torch.equal(ga, gb)
    assert first.pair.real_logit is not None and second.pair.real_logit is not None
    assert torch.equal(first.pair.real_logit, second.pair.real_logit)


def test_logits_that_change_with_the_layout_keep_contiguous_or_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rt, "LOGIT_ATOL", -1.0)  # any difference is too much
    auto = load_version(_digits(tmp_path / "a", {"memory_format": "auto"}))
    assert auto.runtime["memory_format"] == "contiguous" and "changes the logits" in auto.runtime["memory_format_reason"]
    assert auto.runtime["max_abs_logit_diff_channels_last"] > 0
    assert any(n.startswith("memory_format auto: contiguous (channels_last changes the logits") for n in auto.notes)
    assert all(w.is_contiguous() for w in _conv_weights(auto))
    with pytest.raises(ManifestError) as err:
        load_version(_digits(tmp_path / "b", {"memory_format": "channels_last"}))
    assert err.value.field == "runtime.memory_format" and "changes the logits" in err.value.message


def test_a_forward_that_needs_contiguous_activations_stays_contiguous(tmp_path: Path) -> None:
    auto = load_version(_tiny_conv(tmp_path / "a", {"memory_format": "auto"}, "ViewD"))
    assert auto.runtime["memory_format"] == "contiguous"
    assert "channels_last forward fails" in auto.runtime["memory_format_reason"]
    assert all(w.is_contiguous() for w in _conv_weights(auto))
    with torch.no_grad():
        assert auto.pair.logit(auto.pair.generator(torch.randn(3, 4, 1, 1))).shape == (3,)
    with pytest.raises(ManifestError) as err:
        load_version(_tiny_conv(tmp_path / "b", {"memory_format": "channels_last"}, "ViewD"))
    assert err.value.field == "runtime.memory_format" and "view" in err.value.message


def test_channels_last_hands_back_a_contiguous_image(tmp_path: Path) -> None:
    ref = load_version(_tiny_conv(tmp_path / "a", {"memory_format": "contiguous"}, "FlatD"))
    cl = load_version(_tiny_conv(tmp_path / "b", {"memory_format": "channels_last"}, "FlatD"))
    assert cl.runtime["memory_format"] == "channels_last" and all(_is_channels_last(w) for w in _conv_weights(cl))
    z = torch.randn(5, 4, 1, 1)
    with torch.no_grad():
        x, x_ref = cl.pair.generator(z), ref.pair.generator(z)
        assert x.is_contiguous() and x.view(5, -1).shape == (5, 192)  # callers may view G's output
        assert float((x - x_ref).abs().max()) < LOGIT_TOL
        assert float((cl.pair.logit(x) - ref.pair.logit(x_ref)).abs().max()) < LOGIT_TOL


@pytest.mark.parametrize("fmt", ["torch_export", "onnx"])
def test_channels_last_does_nothing_to_saved_graphs_and_says_so(tmp_path: Path, fmt: str) -> None:
    vdir = make_version(tmp_path, g_format=fmt, d_format=fmt)
    manifest = read_toml(vdir)
    manifest["runtime"] = {"memory_format": "channels_last"}
    write_manifest(vdir, manifest)
    model = load_version(vdir)
    assert model.runtime["memory_format"] == "contiguous"
    assert any("keep the layout they were saved with" in n for n in model.notes), model.notes


# ---------------------------------------------------------------------------------------------------------------
# torch.compile


class _CompilerError(RuntimeError):
    pass


_CompilerError.__module__ = "torch._inductor.exc"  # what CompiledFn recognises as the compiler's own failure


def test_compiled_fn_runs_eager_from_a_compiler_error_on_and_passes_user_errors() -> None:
    calls: list[str] = []

    def broken(x: Tensor) -> Tensor:
        calls.append("compiled")
        raise _CompilerError("no C++ compiler")

    def eager(x: Tensor) -> Tensor:
        calls.append("eager")
        return x + 1

    fn = CompiledFn(broken, eager, "toy")
    assert torch.equal(fn(torch.zeros(2)), torch.ones(2)) and fn.failed is not None and "no C++" in fn.failed
    fn(torch.zeros(2))
    assert calls == ["compiled", "eager", "eager"]

    def user_error(x: Tensor) -> Tensor:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        CompiledFn(user_error, eager, "toy")(torch.zeros(2))


def test_a_failing_compiler_leaves_the_model_eager_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(gm: Any, example_inputs: Any) -> Any:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(rt, "COMPILE_BACKEND", no_compiler)
    vdir = make_version(tmp_path)
    manifest = read_toml(vdir)
    manifest["runtime"] = {"compile": True}
    write_manifest(vdir, manifest)
    model = load_version(vdir)
    assert model.runtime["compile_setting"] is True and model.runtime["compile"] is False
    assert "no C++ compiler found" in model.runtime["compile_error"]
    assert any(n.startswith("compile: eager") for n in model.notes), model.notes
    assert not isinstance(model.pair.generator, CompiledFn)
    z = torch.randn(5, NZ, requires_grad=True)
    (grad,) = torch.autograd.grad(model.pair.logit(model.pair.generator(z)).sum(), z)
    assert bool(torch.isfinite(grad).all())


@pytest.mark.slow
def test_compile_with_channels_last_gives_the_eager_results_and_gradients(tmp_path: Path) -> None:
    ref = load_version(_digits(tmp_path / "a", {"memory_format": "contiguous"}))
    fast = load_version(_digits(tmp_path / "b", {"memory_format": "channels_last", "compile": True}))
    assert fast.runtime["compile"] is True, fast.runtime
    assert fast.runtime["memory_format"] == "channels_last"
    assert fast.runtime["compile_seconds"] > 0 and "max_abs_grad_diff_compiled" in fast.runtime
    assert isinstance(fast.pair.generator, CompiledFn) and fast.pair.differentiable
    _assert_same(ref, fast)
    for batch in (2, 37, 300):  # dynamic batch: compiled at load, no compiler failure at new sizes
        with torch.no_grad():
            fast.pair.logit(fast.pair.generator(torch.randn(batch, 64, 1, 1)))
    assert isinstance(fast.pair.generator, CompiledFn) and fast.pair.generator.failed is None
    assert any(n.startswith("compile: torch.compile") for n in fast.notes)
