"""The quality metrics on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from service.zoo.quality import (
    class_report,
    default_min_count,
    frechet_distance,
    kl_to_uniform,
    mode_report,
    precision_recall,
)
from service.zoo.toy import (
    GRID_SIGMA,
    gaussians25_target,
    grid_means,
    sample_gaussians25,
    sample_swissroll,
    swissroll_target,
)

N = 2500


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_perfect_grid_samples_score_perfectly() -> None:
    r = mode_report(sample_gaussians25(N, _gen()), gaussians25_target())
    assert r.hq_fraction > 0.998
    assert r.modes_covered == 25
    assert r.mode_kl < 0.02
    assert sum(r.counts) == round(r.hq_fraction * N)


def test_collapsed_grid_samples_cover_one_mode() -> None:
    x = grid_means()[7] + GRID_SIGMA * torch.randn(N, 2, generator=_gen())
    r = mode_report(x, gaussians25_target())
    assert r.hq_fraction > 0.998  # P(‖N(0, I₂)‖ > 4) = e⁻⁸
    assert r.modes_covered == 1
    assert r.mode_kl == pytest.approx(math.log(25), abs=1e-9)
    assert r.counts[7] == sum(r.counts)


def test_samples_between_modes_are_low_quality() -> None:
    x = torch.full((N, 2), 1.0) + GRID_SIGMA * torch.randn(N, 2, generator=_gen())
    r = mode_report(x, gaussians25_target())
    assert r.hq_fraction == 0.0
    assert r.modes_covered == 0
    assert r.mode_kl == pytest.approx(math.log(25))


def test_hq_radius_is_four_sigma() -> None:
    means = grid_means()
    inside = means[:1] + torch.tensor([[3.9 * GRID_SIGMA, 0.0]])
    outside = means[:1] + torch.tensor([[4.1 * GRID_SIGMA, 0.0]])
    assert mode_report(inside, gaussians25_target()).hq_fraction == 1.0
    assert mode_report(outside, gaussians25_target()).hq_fraction == 0.0


def test_mode_needs_min_count_hq_samples() -> None:
    assert default_min_count(2500, 25) == 10
    assert default_min_count(10, 25) == 1
    means = grid_means()
    x = torch.cat([means[0].expand(N - 9, 2), means[1].expand(9, 2)])
    r = mode_report(x, gaussians25_target())
    assert r.counts[1] == 9
    assert r.modes_covered == 1  # 9 < 10: mode 1 is not covered
    assert mode_report(x, gaussians25_target(), min_count=9).modes_covered == 2


def test_nonfinite_samples_are_low_quality() -> None:
    x = sample_gaussians25(100, _gen())
    x[:10] = float("nan")
    x[10:20, 0] = float("inf")
    assert mode_report(x, gaussians25_target()).hq_fraction == pytest.approx(0.8)


def test_wrong_sample_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        mode_report(torch.zeros(4, 3), gaussians25_target())


def test_kl_to_uniform_known_values() -> None:
    assert kl_to_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0.0)
    assert kl_to_uniform(torch.tensor([3, 0])) == pytest.approx(math.log(2))
    assert kl_to_uniform(torch.tensor([0, 0, 0])) == pytest.approx(math.log(3))
    # p = (3/4, 1/4): log 2 + 3/4 log 3/4 + 1/4 log 1/4
    assert kl_to_uniform(torch.tensor([3, 1])) == pytest.approx(
        math.log(2) + 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    )


def test_swissroll_perfect_and_partial() -> None:
    target = swissroll_target()
    x = sample_swissroll(N, _gen())
    r = mode_report(x, target)
    assert r.hq_fraction > 0.99
    assert r.modes_covered == 10
    assert r.mode_kl < 0.02
    lo = target.points[target.labels == 0]
    x_lo = lo[torch.randint(0, lo.shape[0], (N,), generator=_gen())]
    r_lo = mode_report(x_lo, target)
    assert r_lo.modes_covered == 1
    assert r_lo.mode_kl == pytest.approx(math.log(10))


def test_frechet_distance_of_known_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, 2.0, 0.0, 0.0])
    assert frechet_distance(a, a + shift) == pytest.approx(5.0, abs=1e-6)  # same covariance: ‖μ1 − μ2‖²
    # N(0, I) vs N(0, 4I) in 4 dims: tr(I + 4I − 2·2I) = 4
    assert frechet_distance(a, 2.0 * rng.standard_normal((20000, 4))) == pytest.approx(4.0, rel=0.05)


def test_frechet_distance_refuses_mismatched_features() -> None:
    with pytest.raises(ValueError, match="features must be"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_class_report_balanced_and_collapsed() -> None:
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((1000, 8))
    balanced = torch.arange(1000) % 10
    r = class_report(feats, balanced, feats)
    assert r.classes_covered == 10
    assert r.class_kl == pytest.approx(0.0, abs=1e-12)
    assert r.frechet == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.full((1000,), 3)
    r2 = class_report(feats + 1.0, collapsed, feats)
    assert r2.classes_covered == 1
    assert r2.class_kl == pytest.approx(math.log(10))
    assert r2.frechet == pytest.approx(8.0, abs=1e-6)


def test_precision_recall_of_known_sets() -> None:
    rng = np.random.default_rng(2)
    real = rng.standard_normal((400, 3))
    assert precision_recall(real, real) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(far, real) == (0.0, 0.0)
    collapsed = np.repeat(real[:1], 400, axis=0) + 1e-6 * rng.standard_normal((400, 3))
    precision, recall = precision_recall(collapsed, real)
    assert precision == 1.0  # every sample is a realistic point...
    assert recall < 0.05  # ...but they cover almost none of the real set
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(real[:3], real)
