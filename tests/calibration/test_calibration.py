"""Calibration: known answers, recovery of a known map, calibration quality figures, serialisation."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest
import torch

from service.samplers import calibration as C
from service.samplers.calibration import IDENTITY, Calibration, evaluate, fit, fit_and_evaluate

CLIP = math.log((1 - C.PROB_EPS) / C.PROB_EPS)


def labelled(n: int, a: float, b: float, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw logits d ~ N(0, scale²) whose true P(real | d) = sigmoid(a·d + b): (real logits, fake logits)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, generator=g, dtype=torch.float64) * scale
    y = torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(a * d + b)
    return d[y], d[~y]


def test_calibration_module_imports_torch_and_stdlib_only() -> None:
    tree = ast.parse(Path(C.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    assert roots <= allowed, roots - allowed


@pytest.mark.parametrize(
    ("real", "fake", "expected"),
    [
        ([1.0, 2.0, 3.0], [0.0, 1.5], 5 / 6),
        ([1.0, 1.0], [1.0, 1.0, 1.0], 0.5),  # all tied
        ([2.0, 3.0], [0.0, 1.0], 1.0),
        ([0.0], [1.0], 0.0),
        ([1.0, 2.0], [1.0, 0.0], 0.875),  # one tie counts half: (1 + 0.5 + 1 + 1) / 4
    ],
)
def test_auc_known_answers(real: list[float], fake: list[float], expected: float) -> None:
    scores = torch.tensor(real + fake)
    labels = torch.tensor([1.0] * len(real) + [0.0] * len(fake))
    assert C.auc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_platt_recovers_a_known_affine_map() -> None:
    real, fake = labelled(40_000, a=0.5, b=-1.0)
    cal = fit(real, fake, "platt")
    assert cal.method == "platt"
    assert cal.a == pytest.approx(0.5, abs=0.03)
    assert cal.b == pytest.approx(-1.0, abs=0.05)


def test_platt_on_separable_data_stays_finite_and_ordered() -> None:
    cal = fit(torch.tensor([3.0, 4.0, 5.0]), torch.tensor([-3.0, -4.0]), "platt")
    assert math.isfinite(cal.a) and math.isfinite(cal.b) and cal.a > 0


def test_isotonic_known_pav_answer() -> None:
    # d = 1, 2, 3, 4 with labels 0, 1, 0, 1 -> blocks p = 0 | 0.5 0.5 | 1, clipped at the ends
    cal = fit(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 3.0]), "isotonic")
    assert cal.x == (1.0, 2.0, 3.0, 4.0)
    assert cal.y == pytest.approx((-CLIP, 0.0, 0.0, CLIP))
    out = cal.apply(torch.tensor([0.0, 1.5, 2.5, 10.0], dtype=torch.float64))
    assert out.tolist() == pytest.approx([-CLIP, -CLIP / 2, 0.0, CLIP])


def test_isotonic_is_monotone_and_clipped() -> None:
    real, fake = labelled(5_000, a=1.5, b=0.3, seed=1)
    cal = fit(real, fake, "isotonic")
    grid = torch.linspace(-30, 30, 4001, dtype=torch.float64)
    out = cal.apply(grid)
    assert bool((out[1:] >= out[:-1]).all())
    assert float(out.abs().max()) <= CLIP + 1e-9
    assert bool(torch.isfinite(cal.apply(torch.tensor([-math.inf, math.inf]))).all())
    p = torch.sigmoid(out)
    assert float(p.min()) >= C.PROB_EPS * 0.999 and float(p.max()) <= 1 - C.PROB_EPS * 0.999


def test_dawid_z_small_when_calibrated_large_when_not() -> None:
    real, fake = labelled(20_000, a=1.0, b=0.0, seed=2)  # the raw logit is already calibrated
    good = evaluate(IDENTITY, real, fake)
    assert abs(good.dawid_z) < 3
    assert good.ece < 0.02
    shifted = evaluate(Calibration("platt", a=1.0, b=2.0), real, fake)  # systematically over-confident in "real"
    assert shifted.dawid_z < -20
    assert shifted.ece > 0.1
    assert shifted.brier > good.brier
    assert good.n == 20_000


def test_ece_and_brier_known_answer() -> None:
    rep = evaluate(IDENTITY, torch.zeros(3), torch.zeros(3))  # p = 0.5 everywhere, half real
    assert rep.ece == pytest.approx(0.0, abs=1e-12)
    assert rep.brier == pytest.approx(0.25)
    assert rep.dawid_z == pytest.approx(0.0, abs=1e-12)
    assert rep.auc == pytest.approx(0.5)


def test_identity_is_identity() -> None:
    x = torch.randn(5, 3) * 20
    assert fit(torch.randn(4), torch.randn(4), "identity") is IDENTITY
    assert torch.equal(IDENTITY.apply(x), x)
    assert not IDENTITY.to_dict().keys() - {"method"}


def test_apply_never_infinite_and_keeps_nan() -> None:
    d = torch.tensor([-math.inf, -1.0, math.inf, math.nan])
    for cal in (IDENTITY, Calibration("platt", a=2.0, b=1.0), Calibration("isotonic", x=(0.0, 1.0), y=(-1.0, 1.0))):
        out = cal.apply(d)
        assert bool(torch.isfinite(out[:3]).all()), cal
        assert bool(torch.isnan(out[3])), cal


@pytest.mark.parametrize(
    "cal", [Calibration("platt", a=0.7, b=-0.2), Calibration("isotonic", x=(-1.0, 0.0, 2.0), y=(-3.0, 0.5, 0.5))]
)
def test_apply_is_differentiable(cal: Calibration) -> None:
    d = torch.tensor([-0.5, 1.0], requires_grad=True)
    (g,) = torch.autograd.grad(cal.apply(d).sum(), d)
    expected = [0.7, 0.7] if cal.method == "platt" else [3.5, 0.0]
    assert g.tolist() == pytest.approx(expected)


@pytest.mark.parametrize("method", ["platt", "isotonic", "identity"])
def test_dict_round_trip(method: str) -> None:
    real, fake = labelled(500, a=1.0, b=0.0, seed=3)
    cal = fit(real, fake, method)
    d = {**cal.to_dict(), "auc": 0.7, "dawid_z": 0.1, "n": 10}
    back = Calibration.from_dict(d)
    assert back == cal
    x = torch.linspace(-5, 5, 11)
    assert torch.equal(back.apply(x), cal.apply(x))


def test_from_dict_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="unknown field 'x'"):
        Calibration.from_dict({"method": "platt", "a": 1.0, "b": 0.0, "x": [1.0]})
    with pytest.raises(ValueError, match="platt needs both"):
        Calibration.from_dict({"method": "platt", "a": 1.0})
    with pytest.raises(ValueError, match="strictly increasing"):
        Calibration.from_dict({"method": "isotonic", "x": [1.0, 1.0], "y": [0.0, 1.0]})
    with pytest.raises(ValueError, match="method must be one of"):
        Calibration.from_dict({"method": "beta"})


def test_fit_rejects_non_finite_and_empty_inputs() -> None:
    with pytest.raises(ValueError, match="real_logits must be finite"):
        fit(torch.tensor([1.0, math.nan]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="fake_logits must hold at least one"):
        fit(torch.tensor([1.0]), torch.tensor([]))
    with pytest.raises(ValueError, match="method must be one of"):
        fit(torch.tensor([1.0]), torch.tensor([0.0]), "beta")


def test_split_is_fixed_disjoint_and_complete() -> None:
    a, b = C.split_halves(11, seed=5)
    a2, b2 = C.split_halves(11, seed=5)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert set(a.tolist()).isdisjoint(b.tolist())
    assert sorted(a.tolist() + b.tolist()) == list(range(11))


def test_fit_and_evaluate_scores_on_the_held_out_half() -> None:
    real, fake = labelled(4_000, a=0.5, b=-1.0, seed=4)
    cal, rep = fit_and_evaluate(real, fake, "platt")
    assert rep.n == real.numel() // 2 + fake.numel() // 2
    assert cal.a == pytest.approx(0.5, abs=0.1)
    assert abs(rep.dawid_z) < 3
    assert 0.7 < rep.auc < 0.9
    cal2, rep2 = fit_and_evaluate(real, fake, "platt")
    assert cal2 == cal and rep2 == rep  # deterministic


def test_isotonic_knots_that_collide_in_float32_stay_finite() -> None:
    cal = Calibration("isotonic", x=(1.0, 1.0 + 1e-12, 2.0), y=(-1.0, 1.0, 2.0))
    out = cal.apply(torch.tensor([1.0, 1.5, 3.0], dtype=torch.float32))
    assert bool(torch.isfinite(out).all())
    assert out[1].item() == pytest.approx(1.5) and out[2].item() == pytest.approx(2.0)
