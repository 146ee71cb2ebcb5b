"""docs/algorithms.md §5 test 4: detailed balance.

MH-GAN on a finite pool: G maps z to one of M pool points (bucket j with probability q_j under p0) and D is a table
of logits. The transition matrix is built from the kernel itself: for every current point i and every proposal j,
the acceptance probability min(1, alpha_ij) is the one ``MhSampler.step`` reports (and its 0/1 decisions must hit it
at that rate); P_ij = q_j min(1, alpha_ij). Then pi_i P_ij = pi_j P_ji with pi ∝ q · exp(d).

REP-GAN: log r(z → z') = −log r(z' → z) to 1e-6 (float64), and the kernel's reported log alpha is that ratio.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from service.samplers import GanPair, Streams
from service.samplers.energy import evaluate
from service.samplers.kernel import DRAW_PROPOSAL
from service.samplers.langevin import langevin_mean, mala_log_ratio
from service.samplers.rng import normal
from tests.samplers.analytic import nonlinear_pair
from tests.samplers.helpers import make, params_for

EDGES = torch.tensor([-1.0, -0.2, 0.5, 1.3])  # 5 buckets of p0
POOL_LOGITS = torch.tensor([0.3, -1.2, 2.0, 0.0, -0.4])
M = 5


def _pool_pair() -> GanPair:
    def generator(z: Tensor) -> Tensor:
        return torch.bucketize(z[:, 0].contiguous(), EDGES).to(z.dtype)[:, None]

    def logit(x: Tensor) -> Tensor:
        return POOL_LOGITS.to(x.device)[x[:, 0].long()]

    return GanPair(generator, logit, (1,))


def test_mh_detailed_balance_on_a_finite_pool() -> None:
    cdf = torch.distributions.Normal(0.0, 1.0).cdf(EDGES.double())
    q = torch.diff(torch.cat([torch.zeros(1), cdf, torch.ones(1)]).double()).numpy()
    pi = q * np.exp(POOL_LOGITS.double().numpy())
    pi /= pi.sum()

    algo = make("mh", _pool_pair())
    n = 20000
    streams = Streams.for_request(21, n)
    params = params_for(algo, n, 1)
    t = torch.zeros(n, dtype=torch.int64)
    j = torch.bucketize(normal(streams, t, DRAW_PROPOSAL, (1,))[:, 0].contiguous(), EDGES).numpy()
    state0 = algo.init(streams, params)
    alpha = np.zeros((M, M))
    for i in range(M):
        x = torch.full((n, 1), float(i))
        state = state0._replace(
            x=x, z=x.clone(), logit=POOL_LOGITS[x[:, 0].long()], finite=torch.ones(n, dtype=torch.bool)
        )
        _, info = algo.step(state, streams, params, t)
        rate, acc = info.acceptance_rate.double().numpy(), info.is_accepted.numpy()
        for k in range(M):
            rows = j == k
            assert rows.sum() > 500
            assert np.ptp(rate[rows]) == 0  # the acceptance probability depends on (i, j) only
            alpha[i, k] = rate[rows][0]
            if 0 < alpha[i, k] < 1:  # the 0/1 decisions hit min(1, alpha) (binomial test)
                assert stats.binomtest(int(acc[rows].sum()), int(rows.sum()), alpha[i, k]).pvalue > 1e-4
            else:
                assert acc[rows].all()
    p = q[None, :] * alpha
    np.fill_diagonal(p, 0.0)
    np.fill_diagonal(p, 1.0 - p.sum(1))
    flow = pi[:, None] * p
    assert np.allclose(flow, flow.T, rtol=1e-6, atol=1e-9), flow - flow.T
    assert np.allclose(pi @ p, pi, atol=1e-9)  # so pi is stationary


def test_rep_ratio_is_antisymmetric() -> None:
    pair = nonlinear_pair(dim=3)
    pair64 = GanPair(pair.generator, pair.logit, pair.latent_shape)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    z_p = z + 0.4 * torch.randn(64, 3, generator=gen, dtype=torch.float64)
    tau = torch.full((64,), 0.2, dtype=torch.float64)
    eta = torch.full((64,), 0.5, dtype=torch.float64)
    e, e_p = evaluate(pair64, z, True), evaluate(pair64, z_p, True)
    assert e.grad is not None and e_p.grad is not None
    mu, mu_p = langevin_mean(z, e.grad, tau), langevin_mean(z_p, e_p.grad, tau)
    fwd = mala_log_ratio(z, e.logit, mu, z_p, e_p.logit, mu_p, eta)
    bwd = mala_log_ratio(z_p, e_p.logit, mu_p, z, e.logit, mu, eta)
    assert torch.allclose(fwd, -bwd, rtol=0, atol=1e-6)
    assert fwd.abs().max() > 0.1  # not trivially zero


def test_rep_kernel_reports_the_mala_ratio() -> None:
    """Recompute log alpha independently (MALA's formula written out here) from the kernel's own proposal."""
    pair = nonlinear_pair(dim=3)
    algo = make("rep", pair)
    n = 256
    streams = Streams.for_request(22, n)
    params = params_for(algo, n, 5, {"step_size": 0.3})
    state = algo.init(streams, params)
    t = torch.zeros(n, dtype=torch.int64)
    _, info = algo.step(state, streams, params, t)
    tau, eta = 0.3, math.sqrt(0.3)
    z = state.z.double()
    z_p = (state.mu + eta * normal(streams, t, DRAW_PROPOSAL, (3,))).double()
    pair64 = GanPair(pair.generator, pair.logit, pair.latent_shape)
    e, e_p = evaluate(pair64, z, True), evaluate(pair64, z_p, True)

    def log_pi(zz: Tensor, lg: Tensor) -> Tensor:
        return lg - 0.5 * zz.pow(2).sum(1)

    def log_q(to: Tensor, frm: Tensor, g: Tensor) -> Tensor:
        m = frm + tau / 2 * (g - frm)
        return -(to - m).pow(2).sum(1) / (2 * eta**2)

    assert e.grad is not None and e_p.grad is not None
    want = log_pi(z_p, e_p.logit) - log_pi(z, e.logit) + log_q(z, z_p, e_p.grad) - log_q(z_p, z, e.grad)
    assert torch.allclose(info.log_alpha.double(), want, atol=2e-4)
    assert 0.05 < info.is_accepted.double().mean() < 0.95
