"""docs/algorithms.md §5 tests 1, 2, 3 and 6: analytic targets.

G(z) = a z + b and the analytic d* = log p_d − log p_g, so pi(z) and the law of G(z) are known in closed form.
Chains are independent (one per row), so the final states are B i.i.d. draws from the chain's law after K steps;
K is chosen so that the chain's distance to its target is negligible (see each case), and :mod:`stats_util`
explains the tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from tests.samplers.analytic import (
    TARGET_MEAN,
    TARGET_STD,
    affine_pair,
    gaussian_target_logit_max,
    gaussian_target_pair,
    mixture_logpdf,
    normal_logpdf,
    null_pair,
)
from tests.samplers.helpers import make, run
from tests.samplers.stats_util import KS_ALPHA, assert_fraction, assert_normal

B = 4000

# Exact samplers on pi(z) = N(1, 0.5²), G(z) = z. Independence MH (mh, rep/prior): the weight p_d/p_g is bounded by
# exp(d*_max) ≈ 3.9, so the distance to the target contracts by ≤ 1 − 1/3.9 per step: K = 60 leaves < 1e-7.
# MALA (rep) with tau = 0.3 mixes in a few steps on this Gaussian. DRS with the true max and 60 tries fails to accept
# with probability (1 − 1/3.9)^60 < 1e-7. SIR's bias is O(1/N): N = 400 keeps it well inside the tolerance.
EXACT_CASES = [
    ("mh", {}, 60, {}),
    ("mh", {"init": "real"}, 60, {}),
    ("rep", {}, 100, {"step_size": 0.3}),
    ("rep", {"proposal": "prior"}, 60, {}),
    ("drs", {"logit_max": "exact"}, 60, {}),
    ("sir", {}, 400, {}),
]


def _options(opts: dict) -> dict:
    return {k: (gaussian_target_logit_max() if v == "exact" else v) for k, v in opts.items()}


@pytest.mark.parametrize(("name", "opts", "steps", "values"), EXACT_CASES)
def test_closed_form_target(name: str, opts: dict, steps: int, values: dict) -> None:
    real = torch.randn(500, 1, generator=torch.Generator().manual_seed(0)) * TARGET_STD + TARGET_MEAN
    algo = make(name, gaussian_target_pair(real=real), _options(opts))
    assert algo.exact()
    r = run(algo, seed=11, n=B, steps=steps, values=values)
    assert_normal(r.output.x, TARGET_MEAN, TARGET_STD)
    assert torch.equal(r.output.x, r.output.z)  # G(z) = z: the latent chain and the x chain agree


def test_raw_is_not_the_target() -> None:
    """The check above has power: raw G(z) fails it."""
    r = run(make("raw", gaussian_target_pair()), seed=11, n=B, steps=0)
    with pytest.raises(AssertionError):
        assert_normal(r.output.x, TARGET_MEAN, TARGET_STD)


@pytest.mark.parametrize(("name", "steps", "values"), [("mh", 80, {}), ("rep", 100, {"step_size": 0.3})])
def test_temperature(name: str, steps: int, values: dict) -> None:
    """d~ = a·d*  →  target ∝ p_g^(1−a) p_d^a: precision (1−a)·1 + a·4, mean 4a / precision."""
    a = 0.5
    prec = (1 - a) + a / TARGET_STD**2
    mean = a * TARGET_MEAN / TARGET_STD**2 / prec
    r = run(make(name, gaussian_target_pair(temperature=a)), seed=12, n=B, steps=steps, values=values)
    assert_normal(r.output.x, mean, 1 / math.sqrt(prec))


# p_g = N(−1, 1) covers p_d's right mode only thinly (p_g puts 0.10 of its mass right of 0.25; p_d puts 0.5).
MODES = [(0.5, -1.0, 0.6), (0.5, 1.5, 0.6)]
SPLIT = 0.25


@pytest.mark.slow
@pytest.mark.parametrize(("name", "steps", "values"), [("mh", 400, {}), ("rep", 400, {"step_size": 0.25})])
def test_missing_mode_repopulated(name: str, steps: int, values: dict) -> None:
    pair = affine_pair(lambda x: mixture_logpdf(x, MODES), a=1.0, b=-1.0)
    raw = run(make("raw", pair), seed=13, n=2000, steps=0).output.x.flatten()
    assert (raw > SPLIT).double().mean() < 0.15
    x = run(make(name, pair), seed=13, n=2000, steps=steps, values=values).output.x.flatten()
    assert_fraction((x > SPLIT).numpy(), 0.5)
    for _w, m, s in MODES:  # and each mode has its own shape
        side = x[(x > SPLIT) == (m > SPLIT)]
        assert abs(float(side.mean()) - m) < 0.05 and abs(float(side.std()) - s) < 0.05, (m, side.mean(), side.std())


def test_ddls_bias_matches_ula_and_shrinks() -> None:
    """ULA on U = 2(z − 1)² (precision 4) is stationary at N(1, 1 / (4 (1 − eps))): the O(eps) bias, in closed form.

    eps = 0.2 gives sd 0.559 (biased, detectably so), eps = 0.05 gives 0.513: the error shrinks with eps.
    Steps: the mean contracts by (1 − 2 eps) per step, so 40/eps steps leave < 1e-6 of the initial offset.
    """
    algo = make("ddls", gaussian_target_pair())
    assert not algo.exact()
    xs = {}
    for eps in (0.2, 0.05):
        xs[eps] = run(algo, seed=14, n=B, steps=int(40 / eps), values={"step_size": eps}).output.x
        assert_normal(xs[eps], TARGET_MEAN, math.sqrt(1 / (4 * (1 - eps))))
    err = {eps: abs(float(x.double().std()) - TARGET_STD) for eps, x in xs.items()}
    assert err[0.05] < err[0.2] / 2
    with pytest.raises(AssertionError):  # the bias at eps = 0.2 is resolved: it is not the exact target
        assert_normal(xs[0.2], TARGET_MEAN, TARGET_STD)


def test_null_discriminator_mh_accepts_everything() -> None:
    r = run(make("mh", null_pair(dim=2)), seed=15, n=200, steps=20)
    assert torch.equal(r.stats.accepted, r.stats.proposals)
    assert torch.allclose(r.stats.acceptance_sum, r.stats.proposals.float())


@pytest.mark.parametrize(("name", "values"), [("rep", {"step_size": 0.5}), ("ddls", {"step_size": 0.05})])
def test_null_discriminator_latents_are_the_prior(name: str, values: dict) -> None:
    """With d~ constant, pi = p0: ‖z‖² ~ χ²_4. Started at p0, the chains must stay there (ULA's variance bias at
    eps = 0.05 is 1/(1 − eps/4) − 1 = 1.3%, far below what 3000 draws resolve)."""
    dim = 4
    r = run(make(name, null_pair(dim=dim)), seed=16, n=3000, steps=60, values=values)
    sq = r.output.z.double().pow(2).sum(1).numpy()
    assert stats.kstest(sq, "chi2", args=(dim,)).pvalue > KS_ALPHA
    assert abs(sq.mean() - dim) < 5 * math.sqrt(2 * dim / sq.size)


def test_analytic_logit_is_the_log_ratio() -> None:
    """Guard the fixture itself: d*(x) = log N(x; 1, .25) − log N(x; 0, 1)."""
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    want = normal_logpdf(x, 1.0, 0.5) - normal_logpdf(x, 0.0, 1.0)
    assert torch.allclose(gaussian_target_pair().logit(x), want.flatten())
    assert np.isclose(gaussian_target_logit_max(), math.log(2) + 8 / 9 - 2 / 9)
