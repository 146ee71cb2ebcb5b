"""docs/algorithms.md §5 test 5: reductions between kernels.

- REP-GAN with q = p0 is MH-GAN on the same scores: same draws, same decisions, bit-identical chains.
- DDLS plus MALA's accept test is REP-GAN's L2MC kernel: with the same noise, the same path.
"""

from __future__ import annotations

import math

import torch

from service.samplers import Streams
from service.samplers.ddls import DdlsState
from service.samplers.kernel import DRAW_ACCEPT
from service.samplers.langevin import langevin_mean, mala_log_ratio
from service.samplers.rng import uniform
from tests.samplers.analytic import nonlinear_pair
from tests.samplers.helpers import make, params_for, run


def test_rep_with_prior_proposal_is_mh() -> None:
    pair = nonlinear_pair(dim=3)
    a = run(make("rep", pair, {"proposal": "prior"}), seed=31, n=64, steps=40, trace_every=1)
    b = run(make("mh", pair), seed=31, n=64, steps=40, trace_every=1)
    for fa, fb in zip(a.output, b.output, strict=True):
        assert torch.equal(fa, fb)
    for fa, fb in zip(a.stats, b.stats, strict=True):
        assert torch.equal(fa, fb)
    assert a.traces is not None and b.traces is not None and torch.equal(a.traces.logit, b.traces.logit)
    assert 0 < int(a.stats.accepted.sum()) < int(a.stats.proposals.sum())


def test_ddls_plus_mh_test_is_rep_l2mc() -> None:
    pair = nonlinear_pair(dim=3)
    n, steps, tau = 64, 30, 0.4
    rep, ddls = make("rep", pair), make("ddls", pair)
    streams = Streams.for_request(32, n)
    rp = params_for(rep, n, steps, {"step_size": tau})
    dp = params_for(ddls, n, steps, {"step_size": tau})
    assert torch.equal(rp.noise_scale, torch.sqrt(dp.step_size))
    state = rep.init(streams, rp)
    accepted = rejected = 0
    for k in range(steps):
        t = torch.full((n,), k, dtype=torch.int64)
        assert state.grad is not None and state.mu is not None
        # DDLS's move from REP's current state, then MALA's test with REP's accept uniform, done by hand
        d_state = DdlsState(state.z, state.x, state.logit, state.grad, state.finite, dp.step_size)
        moved, _ = ddls.step(d_state, streams, dp, t)
        mu_p = langevin_mean(moved.z, moved.grad, dp.step_size)
        log_r = mala_log_ratio(state.z, state.logit, state.mu, moved.z, moved.logit, mu_p, torch.sqrt(dp.step_size))
        acc = torch.log(uniform(streams, t, DRAW_ACCEPT)) < log_r
        want = torch.where(acc[:, None], moved.z, state.z)
        state, info = rep.step(state, streams, rp, t)
        assert torch.equal(state.z, want), k
        assert torch.equal(info.is_accepted, acc)
        accepted += int(acc.sum())
        rejected += int((~acc).sum())
    assert accepted > 0 and rejected > 0  # both branches exercised


def test_rep_noise_defaults_to_sqrt_step_size() -> None:
    rep = make("rep", nonlinear_pair())
    p = params_for(rep, 3, 1, {"step_size": 0.04})
    assert torch.allclose(p.noise_scale, torch.full((3,), 0.2))
    p = params_for(rep, 3, 1, {"step_size": 0.04, "noise_scale": 0.3})
    assert torch.allclose(p.noise_scale, torch.full((3,), 0.3))
    p = params_for(rep, 3, 1)
    assert math.isclose(float(p.noise_scale[0]), 0.1, rel_tol=1e-6)
