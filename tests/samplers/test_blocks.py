"""Proposal blocks (service.samplers.block): W steps of mh, drs and sir in one network call give the very chain
that W single steps give. The pairs here act row by row with elementwise ops, so equality is exact."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from service.samplers import SAMPLERS
from service.samplers.base import GanPair, logaddexp
from service.samplers.block import (
    BLOCK_BYTES,
    SCAN_MAX_CHUNK,
    _mh_loop_numpy,
    _mh_loop_python,
    _mh_loop_torch,
    _mh_table,
    block_bytes,
    block_width,
    mh_scan,
    scan_chunk,
    sum_in_order,
)
from service.samplers.driver import ChainRun, run_chains
from service.samplers.kernel import accept_test
from service.samplers.rng import Streams
from tests.samplers.analytic import gaussian_target_logit_max, gaussian_target_pair, nonlinear_pair

BLOCK_SAMPLERS = ("mh", "sir", "drs", "rep", "ddls")


def _algo(name: str, pair: GanPair, options: dict[str, Any] | None = None) -> Any:
    entry = SAMPLERS[name]
    if name == "drs" and options is None:
        options = {"logit_max": gaussian_target_logit_max() + 1.0}
    return entry.cls(pair, entry.options_cls.from_dict(options or {}))


def _nan_pair() -> GanPair:
    """nonlinear_pair whose G returns NaN rows for z_0 > 1.2 and whose D returns +inf for z_1 < -1.5."""
    base = nonlinear_pair(3)

    def generator(z: Tensor) -> Tensor:
        x = base.generator(z)
        return torch.where((z[:, :1] > 1.2), torch.full_like(x, float("nan")), x)

    def logit(x: Tensor) -> Tensor:
        d = base.logit(x)
        return torch.where(x[:, 1] < -1.5, torch.full_like(d, float("inf")), d)

    return base._replace(generator=generator, logit=logit)


def _run(algo: Any, n_steps: Tensor, block_proposals: int, seed: int = 3) -> ChainRun:
    b = int(n_steps.shape[0])
    return run_chains(algo, Streams.for_request(seed, b), algo.make_params({}, b, "cpu"), n_steps,
                      block_proposals=block_proposals)


def _assert_same(a: ChainRun, b: ChainRun) -> None:
    assert torch.equal(a.output.z, b.output.z)
    assert torch.equal(a.output.x.nan_to_num(7.0), b.output.x.nan_to_num(7.0))
    assert torch.equal(a.output.logit.nan_to_num(7.0), b.output.logit.nan_to_num(7.0))
    assert torch.equal(a.steps, b.steps)
    for f in ("accepted", "proposals", "nonfinite"):
        assert torch.equal(getattr(a.stats, f), getattr(b.stats, f)), f
    assert torch.equal(a.stats.acceptance_sum, b.stats.acceptance_sum)
    torch.testing.assert_close(a.stats.logit_final.nan_to_num(7.0), b.stats.logit_final.nan_to_num(7.0))
    assert a.extras.keys() == b.extras.keys()
    for k in a.extras:
        torch.testing.assert_close(a.extras[k].double().nan_to_num(7.0), b.extras[k].double().nan_to_num(7.0))


@pytest.mark.parametrize("name", BLOCK_SAMPLERS)
@pytest.mark.parametrize("pair_fn", [gaussian_target_pair, lambda: nonlinear_pair(3), _nan_pair],
                         ids=["gaussian", "nonlinear", "nonfinite"])
def test_blocks_give_the_chains_of_single_steps(name: str, pair_fn: Any) -> None:
    algo = _algo(name, pair_fn())
    assert algo.supports_blocks()
    b = 24
    n_steps = torch.randint(1, 60, (b,), generator=torch.Generator().manual_seed(1))  # rows of unequal length
    single = _run(algo, n_steps, block_proposals=1)
    assert single.stats.proposals.sum() > 0
    # widths 1 (every row), 7 (does not divide the lengths), 64 (longer than every chain: one block)
    for proposals in (b, 7 * b, 64 * b):
        _assert_same(_run(algo, n_steps, block_proposals=proposals), single)


def test_nonfinite_proposals_are_counted_and_never_kept_in_blocks() -> None:
    algo = _algo("mh", _nan_pair())
    run = _run(algo, torch.full((32,), 50), block_proposals=32 * 50)
    assert int(run.stats.nonfinite.sum()) > 0
    assert bool(torch.isfinite(run.output.x).all())


def test_drs_block_stops_each_row_at_its_first_acceptance() -> None:
    algo = _algo("drs", gaussian_target_pair(), {"logit_max": gaussian_target_logit_max() + 3.0})
    run = _run(algo, torch.full((200,), 12), block_proposals=200 * 5)
    acc = run.extras["accepted"]
    assert bool(acc.any()) and int(acc.sum()) < 200  # both kinds of rows exist at this logit_max
    # one accepted step per row that accepted after init's try; tries = init + steps; an exhausted row ran them all
    stepped = run.steps > 0
    assert torch.equal(run.stats.accepted[stepped], acc[stepped].to(torch.int64))
    assert bool(acc[~stepped].all())
    assert torch.equal(run.extras["tries"], run.steps + 1)
    assert bool((run.extras["tries"][~acc] == 12).all())


def test_mh_real_init_blocks_give_the_chains_of_single_steps() -> None:
    """With real init some rows never accept by K and restart from their first proposal for K more steps."""
    real = torch.randn(50, 1, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    algo = _algo("mh", gaussian_target_pair(temperature=3.0, real=real), {"init": "real"})
    b, k = 40, 6
    runs = [run_chains(algo, Streams.for_request(1, b), algo.make_params({"steps": torch.tensor(k)}, b, "cpu"), k,
                       block_proposals=p) for p in (1, 4 * b, 64 * b)]
    restarted = runs[0].extras["restarted"]
    assert bool(restarted.any()) and not bool(restarted.all())  # both kinds of rows
    assert torch.equal(runs[0].steps[restarted], torch.full((int(restarted.sum()),), 2 * k))
    for r in runs[1:]:
        _assert_same(r, runs[0])


def test_one_shot_raw_has_no_blocks() -> None:
    assert not _algo("raw", gaussian_target_pair()).supports_blocks()


def test_block_width_fills_the_proposal_budget_within_the_byte_budget() -> None:
    assert block_width(1, 8, proposals=4096) == 4096
    assert block_width(256, 8, proposals=4096) == 16
    assert block_width(5000, 8, proposals=4096) == 1  # never below one step
    big = BLOCK_BYTES // 100  # a sample so large that only 100 fit
    assert block_width(10, big, proposals=4096) == 10
    assert block_width(1000, big, proposals=4096) == 1
    assert block_bytes("cpu") == BLOCK_BYTES and block_bytes("cuda:1") > BLOCK_BYTES  # wider calls fill a GPU


class _Counting:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, z: Tensor) -> Tensor:
        self.calls.append(int(z.shape[0]))
        return z


def test_one_chain_scores_its_proposals_in_blocks_not_one_by_one() -> None:
    g = _Counting()
    algo = _algo("mh", gaussian_target_pair()._replace(generator=g))
    _run(algo, torch.full((1,), 640), block_proposals=256)
    # init (1 row), then 640 steps in blocks of 256, 256, 128 rows
    assert g.calls == [1, 256, 256, 128]


def test_logaddexp_gives_each_element_the_same_bits_at_any_position() -> None:
    a = torch.randn(4099, generator=torch.Generator().manual_seed(2)) * 4
    b = torch.randn(4099, generator=torch.Generator().manual_seed(3)) * 4
    whole = logaddexp(a, b)
    alone = torch.stack([logaddexp(a[i : i + 1], b[i : i + 1])[0] for i in range(0, 4099, 7)])
    assert torch.equal(whole[::7], alone)
    torch.testing.assert_close(whole, torch.logaddexp(a, b))
    inf = float("inf")
    edge = logaddexp(torch.tensor([-inf, inf, -inf, 1.0]), torch.tensor([-inf, inf, 2.0, -inf]))
    assert edge.tolist() == [-inf, inf, 2.0, 1.0]


@pytest.mark.parametrize("block_proposals", [1, 4096])
def test_sir_sums_do_not_depend_on_the_rows_beside_a_chain(block_proposals: int) -> None:
    algo = _algo("sir", nonlinear_pair(3))
    big = run_chains(algo, Streams.for_request(9, 300), algo.make_params({}, 300, "cpu"), 40,
                     block_proposals=block_proposals)
    for lo, hi in ((0, 13), (101, 140)):
        part = run_chains(algo, Streams.for_request(9, hi - lo, first_chain=lo), algo.make_params({}, hi - lo, "cpu"),
                          40, block_proposals=block_proposals)
        assert torch.equal(part.extras["ess"], big.extras["ess"][lo:hi])
        assert torch.equal(part.output.x, big.output.x[lo:hi])


@pytest.mark.parametrize(("rows", "width"), [(1, 300), (3, 130), (40, 17), (300, 9), (2000, 5)])
def test_mh_scan_makes_the_decisions_of_sequential_accept_tests(rows: int, width: int) -> None:
    """Every way mh_scan decides (Python, numpy and torch step loops, next-accept tables) against sequential
    accept_test calls."""
    g = torch.Generator().manual_seed(rows)
    logit = torch.randn(rows, width, generator=g) * 2
    logit[torch.rand(rows, width, generator=g) < 0.05] = float("nan")
    logit[torch.rand(rows, width, generator=g) < 0.03] = float("inf")
    on = torch.arange(width)[None, :] < torch.randint(0, width + 1, (rows,), generator=g)[:, None]
    ok = torch.isfinite(logit) & on
    u = torch.rand(rows, width, generator=g).clamp(1e-7, 1 - 1e-7)
    current = torch.randn(rows, generator=g)
    current[torch.rand(rows, generator=g) < 0.2] = float("nan")
    cur, cur_ok = current.clone(), torch.isfinite(current)
    accs, las = [], []
    for j in range(width):
        test = accept_test(logit[:, j] - cur, ok[:, j], cur_ok, u[:, j])
        accs.append(test.accept)
        las.append(test.log_alpha)
        cur = torch.where(test.accept, logit[:, j], cur)
        cur_ok = cur_ok | test.accept
    args = (logit, ok, torch.log(u), current, torch.isfinite(current))
    every_way = [mh_scan(*args), _mh_loop_torch(*args), _mh_loop_numpy(*args), _mh_loop_python(*args),
                 _mh_table(*args, 64), _mh_table(*args, 8)]  # CPU paths, and the GPU's (torch loop, tables)
    for acc, la in every_way:
        assert torch.equal(acc, torch.stack(accs, 1))
        assert torch.equal(la, torch.stack(las, 1))
    assert bool(acc.any()) and not bool(acc.all())


def test_scan_chunk_shrinks_with_rows_and_falls_back_to_the_loop() -> None:
    assert scan_chunk(4096) == SCAN_MAX_CHUNK  # a GPU builds large tables rather than loop over steps
    assert scan_chunk(2**18) == 8
    assert scan_chunk(10**6) == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("name", BLOCK_SAMPLERS)
def test_blocks_on_cuda_give_the_chains_of_single_steps(name: str) -> None:
    """On a GPU the mh scan builds large next-accept tables (no step loop); the chains stay those of single steps."""
    algo = _algo(name, nonlinear_pair(3))
    b = 300
    n_steps = torch.randint(1, 200, (b,), generator=torch.Generator().manual_seed(4)).cuda()
    runs = [run_chains(algo, Streams.for_request(5, b, "cuda"), algo.make_params({}, b, "cuda"), n_steps,
                       block_proposals=p) for p in (1, 64 * b)]
    assert runs[1].output.z.device.type == "cuda"
    _assert_same(runs[1], runs[0])


def test_drs_blocks_shrink_to_the_tries_rows_need() -> None:
    """At a high acceptance rate a block of many tries per row would mostly be scored after the row accepted."""
    g = _Counting()
    algo = _algo("drs", gaussian_target_pair()._replace(generator=g), {"logit_max": gaussian_target_logit_max()})
    b = 64
    run = _run(algo, torch.full((b,), 640), block_proposals=4096)
    assert bool(run.extras["accepted"].all())
    tries = int(run.extras["tries"].sum())
    assert sum(g.calls) <= 3 * tries, (sum(g.calls), tries)


def test_sum_in_order_adds_left_to_right_as_single_steps_do() -> None:
    g = torch.Generator().manual_seed(0)
    start, values = torch.rand(50, generator=g) * 100, torch.rand(50, 300, generator=g)
    total = start.clone()
    for j in range(300):
        total = total + values[:, j]
    assert torch.equal(sum_in_order(start, values), total)
    assert not torch.equal(start + values.sum(1), total)  # a reduction's order gives other bits: the test can fail
