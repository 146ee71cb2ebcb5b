"""docs/algorithms.md §5 test 8: logits of ±50, probabilities of exactly 0 or 1 (logits ±inf), NaN from G.

Every sampler: no NaN in any Info field, acceptance rates in [0, 1], non-finite proposals counted and never kept
once a finite one was seen, and no chain stuck on a bad state. Degenerate inputs get clear errors.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from service.samplers import GanPair, Streams, UnsupportedPairError
from service.samplers.driver import init_stats, update_stats
from tests.samplers.helpers import NAMES, make, params_for

B = 256
STEPS = 12


def _generator(z: Tensor) -> Tensor:
    """NaN for z_0 > 1 (about 16% of prior draws)."""
    return torch.where(z[:, :1] > 1.0, torch.full_like(z, float("nan")), z)


def _extreme_logit(x: Tensor) -> Tensor:
    """±50 and, in thin bands, probabilities of exactly 1 and 0 (logits +inf / −inf)."""
    s = x[:, 0]
    lg = torch.where(s > 0, torch.full_like(s, 50.0), torch.full_like(s, -50.0))
    lg = torch.where((s > 0.7) & (s < 0.8), torch.full_like(s, float("inf")), lg)
    return torch.where((s < -1.5) & (s > -1.7), torch.full_like(s, float("-inf")), lg)


PAIR = GanPair(_generator, _extreme_logit, (2,))


@pytest.mark.parametrize("name", NAMES)
def test_extreme_and_nonfinite_inputs(name: str) -> None:
    algo = make(name, PAIR)
    streams = Streams.for_request(41, B)
    params = params_for(algo, B, STEPS, {"step_size": 0.1} if algo.param_specs else {})
    state = algo.init(streams, params)
    stats = init_stats(algo, state)
    z0 = algo.output(state).z.clone()
    t = torch.zeros(B, dtype=torch.int64)
    n = torch.full((B,), STEPS)
    for _ in range(STEPS):
        active = ~algo.done(state, params, t, n)
        new, info = algo.step(state, streams, params, t)
        for f in info:
            assert not torch.isnan(f.float()).any()
        assert ((info.acceptance_rate >= 0) & (info.acceptance_rate <= 1)).all()
        assert not (info.is_accepted & info.is_nonfinite).any()  # a non-finite proposal is never accepted
        state = type(state)(
            *(
                None if a is None else torch.where(active.reshape(-1, *[1] * (a.dim() - 1)), a, b)
                for a, b in zip(new, state, strict=True)
            )
        )
        stats = update_stats(stats, info, active)
        t = t + active.long()
    out = algo.output(state)
    finite = torch.isfinite(out.logit) & torch.isfinite(out.x).all(1)
    # Most chains that ran steps reach finite states; local samplers started deep in the NaN region (z_0 > 2)
    # diffuse out slowly, but no chain is stuck: every chain still on a non-finite state has moved (or ran no step,
    # as a one-shot kernel), and its trouble is reported as data.
    ran = t > 0
    assert not ran.any() or finite[ran].float().mean() > 0.95
    assert not torch.isnan(out.z).any()
    moved = (out.z != z0).any(1)
    assert (moved | ~ran)[~finite].all()
    assert (stats.nonfinite[~finite] > 0).all()
    assert int(stats.nonfinite.sum()) > 0  # they were met, and counted
    assert not torch.isnan(stats.acceptance_sum).any()


@pytest.mark.parametrize("name", ["mh", "rep"])
def test_chains_leave_a_nan_initial_state(name: str) -> None:
    """Start every chain on a NaN sample: the first finite proposal is accepted (no chain stays stuck)."""
    algo = make(name, PAIR)
    streams = Streams.for_request(42, B)
    params = params_for(algo, B, STEPS)
    state = algo.init(streams, params)
    nan = torch.full_like(state.logit, float("nan"))
    state = state._replace(logit=nan, finite=torch.zeros_like(state.finite), x=torch.full_like(state.x, float("nan")))
    t = torch.zeros(B, dtype=torch.int64)
    _, info = algo.step(state, streams, params, t)
    assert torch.equal(info.is_accepted, ~info.is_nonfinite)
    assert not torch.isnan(info.acceptance_rate).any()


def test_mh_real_init_needs_holdout() -> None:
    with pytest.raises(UnsupportedPairError, match="held-out"):
        make("mh", PAIR, {"init": "real"})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(6, 1, 16, 16), (6, 3, 9, 7), (6, 40), (6, 2)])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_rows_finite_finds_one_bad_value_anywhere(dtype: torch.dtype, shape: tuple[int, ...], value: float) -> None:
    """The per-row check (max and min for long rows) agrees with the elementwise one, in any memory layout, for a
    single non-finite value at every position of a row."""
    from service.samplers.energy import rows_finite

    g = torch.Generator().manual_seed(3)
    base = torch.randn(shape, generator=g).to(dtype)
    layouts = [base]
    if base.dim() == 4:
        layouts.append(base.contiguous(memory_format=torch.channels_last))
    for x0 in layouts:
        assert rows_finite(x0).all()
        row = x0[0].numel()
        for pos in range(0, row, max(1, row // 37)):
            x = x0.clone()  # keeps x0's layout
            x[(2, *(int(i) for i in torch.unravel_index(torch.tensor(pos), x.shape[1:])))] = value
            expect = torch.tensor([True, True, False, True, True, True])
            assert torch.equal(rows_finite(x), expect), (pos, x0.stride())


@pytest.mark.parametrize("bad_in", ["logit", "grad", "x", "none"])
def test_rows_finite_of_several_tensors_is_the_and_of_each(bad_in: str) -> None:
    """A step checks its logit (B,), gradient (B, *latent) and sample (B, *output) in one call: a row is finite when
    it is in all three, whatever their dtypes. A float64 value beyond float32's range is finite and stays so (the
    columns are compared in the widest dtype, not cast down to infinity)."""
    from service.samplers.energy import rows_finite

    g = torch.Generator().manual_seed(5)
    logit = torch.randn(7, generator=g, dtype=torch.float64)
    logit[1] = 1e300
    grad = torch.randn(7, 2, generator=g)
    x = torch.randn(7, 1, 8, 8, generator=g).to(torch.bfloat16)
    for name, t in (("logit", logit), ("grad", grad), ("x", x)):
        if name == bad_in:
            t.view(7, -1)[4, -1] = float("nan")
    expect = torch.tensor([i != 4 or bad_in == "none" for i in range(7)])
    separate = rows_finite(logit) & rows_finite(grad) & rows_finite(x)
    assert torch.equal(separate, expect)
    assert torch.equal(rows_finite(logit, grad, x), expect)
    assert torch.equal(rows_finite(x, logit, grad), expect)
