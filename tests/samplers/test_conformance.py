"""One contract suite over every sampler in SAMPLERS (diffusers-style: no branch on a sampler's name)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from service.samplers import SAMPLERS, GanPair, SamplerParamError, Streams, UnsupportedPairError
from service.samplers.base import tree_cat, tree_select
from service.samplers.driver import run_chains
from service.samplers.options import Choice, Flag, Number
from tests.samplers.analytic import gaussian_target_pair, nonlinear_pair
from tests.samplers.helpers import NAMES, make, params_for, run, run_streams

B = 6
STEPS = 5


def _equal_runs(a, b) -> None:
    for fa, fb in zip(a.output, b.output, strict=True):
        assert torch.equal(fa, fb)
    for fa, fb in zip(a.stats, b.stats, strict=True):
        assert torch.equal(fa, fb)
    assert a.extras.keys() == b.extras.keys()
    for k in a.extras:
        assert torch.equal(a.extras[k], b.extras[k])


@pytest.mark.parametrize("name", NAMES)
def test_entry_metadata(name: str) -> None:
    entry = SAMPLERS[name]
    assert entry.cls.name == name
    assert isinstance(entry.cls.needs_grad, bool)
    assert isinstance(entry.cls.default_steps, int) and entry.cls.default_steps >= 0
    opts = entry.options_cls.from_dict({})
    assert opts == entry.options_cls()
    assert set(entry.options_cls.describe()) == {f.name for f in dataclasses.fields(entry.options_cls)}
    for spec in entry.cls.param_specs:
        assert spec.low <= spec.default <= spec.high, spec
        spec.check(spec.default)
    assert isinstance(make(name, nonlinear_pair()).exact(), bool)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_traces(name: str) -> None:
    pair = nonlinear_pair(dim=3)
    r = run(make(name, pair), seed=1, n=B, steps=STEPS, trace_every=2)
    assert r.output.z.shape == (B, 3) and r.output.z.dtype == torch.float32
    assert r.output.x.shape == (B, 3) and r.output.x.dtype == torch.float32
    assert r.output.logit.shape == (B,)
    assert torch.isfinite(r.output.x).all() and torch.isfinite(r.output.logit).all()
    for f, dtype in zip(
        r.stats, (torch.int64, torch.int64, torch.float32, torch.int64, torch.float32, torch.float32), strict=True
    ):
        assert f.shape == (B,) and f.dtype == dtype
    assert (r.stats.accepted <= r.stats.proposals).all()
    assert (r.stats.acceptance_sum <= r.stats.proposals.float() + 1e-5).all()
    assert torch.equal(r.stats.logit_final, r.output.logit)
    assert (r.steps <= 2 * STEPS).all()
    for v in r.extras.values():
        assert v.shape == (B,)
    assert r.traces is not None
    assert r.traces.logit.shape[1] == B and r.traces.logit.shape == r.traces.energy.shape == r.traces.z_norm.shape
    assert r.curve.dim() == 1 and ((r.curve >= 0) & (r.curve <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
def test_info_contract(name: str) -> None:
    algo = make(name, nonlinear_pair())
    streams = Streams.for_request(3, B)
    params = params_for(algo, B, STEPS)
    state = algo.init(streams, params)
    for f in state:
        assert f is None or f.shape[0] == B
    t = torch.zeros(B, dtype=torch.int64)
    for _ in range(3):
        state, info = algo.step(state, streams, params, t)
        t = t + 1
        assert info.acceptance_rate.shape == (B,) and info.acceptance_rate.is_floating_point()
        assert ((info.acceptance_rate >= 0) & (info.acceptance_rate <= 1)).all()
        assert info.is_accepted.shape == (B,) and info.is_accepted.dtype == torch.bool
        assert info.is_nonfinite.shape == (B,) and info.is_nonfinite.dtype == torch.bool
        assert info.logit.shape == (B,)
        assert torch.equal(info.logit, algo.output(state).logit)
    assert algo.done(state, params, t, torch.full((B,), 3)).dtype == torch.bool
    assert algo.done(state, params, torch.zeros(B, dtype=torch.int64) + 10**6, torch.full((B,), 3)).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_run_to_run(name: str) -> None:
    algo = make(name, nonlinear_pair())
    a = run(algo, seed=5, n=B, steps=STEPS, trace_every=1)
    b = run(make(name, nonlinear_pair()), seed=5, n=B, steps=STEPS, trace_every=1)
    _equal_runs(a, b)
    assert a.traces is not None and b.traces is not None
    assert torch.equal(a.traces.logit, b.traces.logit) and torch.equal(a.traces.z_norm, b.traces.z_norm)
    c = run(algo, seed=6, n=B, steps=STEPS)
    assert not torch.equal(a.output.z, c.output.z)


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name: str) -> None:
    """A chain's result depends only on (seed, chain): alone, in its request, or merged with another request."""
    pair = gaussian_target_pair(dim=2)
    algo = make(name, pair)
    a = Streams.for_request(7, 5)
    b = Streams.for_request(11, 3)
    merged = tree_cat([a, b])
    ra, rb, rm = run_streams(algo, a, STEPS), run_streams(algo, b, STEPS), run_streams(algo, merged, STEPS)
    alone = run_streams(algo, Streams(torch.tensor([7]), torch.tensor([2])), STEPS)
    for fa, fb, fm, f1 in zip(ra.output, rb.output, rm.output, alone.output, strict=True):
        assert torch.equal(torch.cat([fa, fb]), fm)
        assert torch.equal(fa[2:3], f1)
    for fa, fb, fm in zip(ra.stats, rb.stats, rm.stats, strict=True):
        assert torch.equal(torch.cat([fa, fb]), fm)


@pytest.mark.parametrize("name", NAMES)
def test_rows_join_and_leave(name: str) -> None:
    """The engine's path: states of different requests concatenated, stepped, selected; per-row lengths."""
    pair = gaussian_target_pair(dim=2)
    algo = make(name, pair)
    sa, sb = Streams.for_request(7, 4), Streams.for_request(9, 4)
    pa, pb = params_for(algo, 4, STEPS), params_for(algo, 4, STEPS)
    xa, xb = algo.init(sa, pa), algo.init(sb, pb)
    t = torch.zeros(4, dtype=torch.int64)
    merged_state, _ = algo.step(tree_cat([xa, xb]), tree_cat([sa, sb]), tree_cat([pa, pb]), torch.cat([t, t]))
    alone_state, _ = algo.step(xb, sb, pb, t)
    rows = torch.arange(4, 8)
    for fm, fa in zip(tree_select(merged_state, rows), alone_state, strict=True):
        assert (fm is None and fa is None) or torch.equal(fm, fa)
    # per-row lengths: each row equals its own run of that length
    n = torch.tensor([1, 3, 6, 2])
    mixed = run_chains(algo, sa, pa, n)
    for i, k in enumerate(n.tolist()):
        own = run_streams(algo, Streams(sa.seed[i : i + 1], sa.chain[i : i + 1]), k)
        assert torch.equal(mixed.output.x[i : i + 1], own.output.x)
        assert torch.equal(mixed.stats.proposals[i : i + 1], own.stats.proposals)


def _bad_option_values(constraint: object) -> list[object]:
    if isinstance(constraint, Choice):
        return ["no-such-choice", 3, None]
    if isinstance(constraint, Flag):
        return ["yes", 1, None]
    assert isinstance(constraint, Number)
    return ["x", math.nan, math.inf, constraint.high * 10 + 1, True]


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters_are_named(name: str) -> None:
    entry = SAMPLERS[name]
    algo = make(name, nonlinear_pair())
    for spec in entry.cls.param_specs:
        for bad in (spec.low - abs(spec.low) - 1.0, spec.high * 10 + 1.0, math.nan, math.inf, "0.1", True):
            with pytest.raises(SamplerParamError) as e:
                spec.check(bad)  # type: ignore[arg-type]
            assert e.value.param == spec.name and spec.name in str(e.value)
    with pytest.raises(SamplerParamError) as e:
        algo.make_params({"no_such_param": torch.tensor(1.0)}, 2, "cpu")
    assert e.value.param == "no_such_param"
    with pytest.raises(SamplerParamError) as e:
        entry.options_cls.from_dict({"no_such_option": 1})
    assert e.value.param == "no_such_option"
    for f in dataclasses.fields(entry.options_cls):
        for bad_opt in _bad_option_values(f.metadata["option"]):
            if bad_opt is None and isinstance(f.metadata["option"], Number) and f.metadata["option"].optional:
                continue
            with pytest.raises(SamplerParamError) as e:
                entry.options_cls.from_dict({f.name: bad_opt})
            assert e.value.param == f.name and repr(bad_opt) in str(e.value)


@pytest.mark.parametrize("name", NAMES)
def test_forward_only_pair(name: str) -> None:
    p = nonlinear_pair()
    frozen = GanPair(p.generator, p.logit, p.latent_shape, differentiable=False)
    if SAMPLERS[name].cls.needs_grad:
        with pytest.raises(UnsupportedPairError) as e:
            make(name, frozen)
        assert name in str(e.value)
    else:
        r = run(make(name, frozen), seed=1, n=2, steps=2)
        assert torch.isfinite(r.output.x).all()


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda,
                                          pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_devices(name: str, device: str) -> None:
    pair = gaussian_target_pair(dim=2)
    r = run(make(name, pair), seed=3, n=B, steps=STEPS, device=device)
    assert r.output.x.device.type == device and r.stats.accepted.device.type == device
    ref = run(make(name, pair), seed=3, n=B, steps=STEPS)
    # same random streams on every device; the networks may round differently
    assert torch.allclose(r.output.z.cpu(), ref.output.z, atol=1e-4)
