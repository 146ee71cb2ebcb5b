"""Sampler-specific behaviour: MH-GAN's real init and restart, DRS's max / exhaustion / gamma shift, SIR's weights,
DDLS's decay, and the driver's bookkeeping."""

from __future__ import annotations

import pytest
import torch

from service.samplers.driver import run_chains
from service.samplers.rng import Streams
from tests.samplers.analytic import TARGET_MEAN, TARGET_STD, gaussian_target_pair, null_pair
from tests.samplers.helpers import make, params_for, run
from tests.samplers.stats_util import assert_normal

REAL = torch.linspace(0.0, 2.0, 50)[:, None]


def test_mh_real_init_restarts_chains_that_never_accept() -> None:
    """Real samples scored far above every fake are never left: each chain restarts from its first fake, runs K more
    steps, and still lands on the target; a real sample is never returned."""
    p = gaussian_target_pair()
    pair = p._replace(real=REAL, real_logit=torch.full((50,), 30.0))
    k = 60
    r = run(make("mh", pair, {"init": "real"}), seed=51, n=4000, steps=k)
    assert r.extras["restarted"].all()
    assert torch.equal(r.steps, torch.full((4000,), 2 * k))
    assert not (r.output.z == 0).all(1).any()
    assert torch.equal(r.output.x, r.output.z)  # every output is a G sample
    assert_normal(r.output.x, TARGET_MEAN, TARGET_STD)


def test_mh_real_init_starts_at_holdout_samples() -> None:
    p = gaussian_target_pair()
    pair = p._replace(real=REAL, real_logit=p.logit(REAL))
    algo = make("mh", pair, {"init": "real"})
    state = algo.init(Streams.for_request(52, 400), params_for(algo, 400, 5))
    assert state.is_real.all()
    idx = torch.cdist(state.x, REAL).argmin(1)
    assert torch.equal(state.x, REAL[idx]) and idx.unique().numel() > 40  # every chain draws its own index
    r = run(algo, seed=52, n=400, steps=5)
    assert pair.real_logit is not None
    assert (r.stats.logit_initial.unsqueeze(1) == pair.real_logit.unsqueeze(0)).any(1).all()


def test_mh_real_init_needs_the_row_lengths() -> None:
    p = gaussian_target_pair()
    algo = make("mh", p._replace(real=REAL, real_logit=p.logit(REAL)), {"init": "real"})
    with pytest.raises(ValueError, match="steps"):
        algo.make_params({}, 3, "cpu")


def test_drs_exhausts_and_flags() -> None:
    algo = make("drs", gaussian_target_pair(), {"logit_max": 60.0})
    r = run(algo, seed=53, n=100, steps=7)
    assert r.extras["exhausted"].all() and not r.extras["accepted"].any()
    assert torch.equal(r.extras["tries"], torch.full((100,), 7))
    assert torch.isfinite(r.output.x).all()


def test_drs_counts_proposals_above_the_max() -> None:
    algo = make("drs", gaussian_target_pair(), {"logit_max": -1.0})
    r = run(algo, seed=54, n=200, steps=50)
    assert int(r.extras["above_max"].sum()) > 0
    assert r.extras["accepted"].all()


def test_drs_pilot_max_is_deterministic_and_close() -> None:
    a = make("drs", gaussian_target_pair())
    b = make("drs", gaussian_target_pair())
    assert a.logit_max == b.logit_max
    assert 1.30 < a.logit_max <= 1.3599  # true max 1.3598 at x = 4/3


def test_drs_gamma_shift_is_biased_and_flagged() -> None:
    algo = make("drs", gaussian_target_pair(), {"gamma_shift": True})
    assert not algo.exact()
    plain = run(make("drs", gaussian_target_pair()), seed=55, n=2000, steps=100)
    shifted = run(algo, seed=55, n=2000, steps=100)
    # sigmoid(F - gamma) with gamma at the 95th percentile of F favours high scores: a different (biased) target
    assert float(shifted.output.logit.mean()) > float(plain.output.logit.mean()) + 0.1
    assert algo.gamma > 0


def test_sir_weights_and_ess() -> None:
    """Equal weights (constant D): ESS = N and max weight = 1/N exactly; the kept candidate is uniform."""
    n = 32
    r = run(make("sir", null_pair(dim=2)), seed=56, n=500, steps=n)
    assert torch.allclose(r.extras["ess"], torch.full((500,), float(n)), rtol=1e-5)
    assert torch.allclose(r.extras["max_weight"], torch.full((500,), 1.0 / n), rtol=1e-5)
    assert torch.equal(r.steps, torch.full((500,), n - 1))  # init is candidate 1


def test_ddls_decay_is_reported() -> None:
    pair = gaussian_target_pair()
    plain = run(make("ddls", pair), seed=57, n=8, steps=200, values={"step_size": 0.05})
    decayed = run(make("ddls", pair, {"decay": True}), seed=57, n=8, steps=200, values={"step_size": 0.05})
    assert torch.allclose(plain.extras["step_size_final"], torch.full((8,), 0.05))
    assert (decayed.extras["step_size_final"] < 0.05 * 0.6).all()
    assert not make("ddls", pair, {"decay": True}).exact()


def test_driver_bookkeeping() -> None:
    algo = make("mh", gaussian_target_pair())
    streams = Streams.for_request(58, 4)
    n = torch.tensor([0, 1, 5, 9])
    r = run_chains(algo, streams, params_for(algo, 4, n), n, trace_every=3)
    assert torch.equal(r.steps, n) and torch.equal(r.stats.proposals, n)
    assert r.curve.shape == (9,)
    assert r.traces is not None and r.traces.t.tolist() == [0, 3, 6, 9]
    assert torch.equal(r.traces.logit[-1], r.output.logit)
    # a row stops changing once its length is reached
    assert torch.equal(r.traces.logit[:, 0], r.traces.logit[:1, 0].expand(4))


def test_options_from_model_defaults() -> None:
    from service.samplers import DrsOptions

    table = {"steps": 100, "logit_max": 2.5, "step_size": 0.1}
    assert DrsOptions.from_defaults(table) == DrsOptions(logit_max=2.5)
    assert DrsOptions.from_defaults(table, {"logit_max": 1.0}) == DrsOptions(logit_max=1.0)
    assert DrsOptions.from_defaults(table, {"gamma_shift": True}) == DrsOptions(logit_max=2.5, gamma_shift=True)
    with pytest.raises(ValueError, match="logit_max"):
        DrsOptions.from_defaults({"logit_max": "high"})
