"""run_chains stops stepping finished rows: DRS rows that accepted early are not evaluated again, and the result is
the same as running each chain alone."""

from __future__ import annotations

import torch
from torch import Tensor

from service.samplers import SAMPLERS
from service.samplers.base import GanPair
from service.samplers.driver import COMPACT_BELOW, run_chains
from service.samplers.rng import Streams
from tests.samplers.analytic import gaussian_target_logit_max, gaussian_target_pair


class CountingG:
    """G(z) = z that counts the rows it evaluates."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, z: Tensor) -> Tensor:
        self.rows += int(z.shape[0])
        return z


def _drs(pair: GanPair, logit_max: float):  # type: ignore[no-untyped-def]
    entry = SAMPLERS["drs"]
    return entry.cls(pair, entry.options_cls.from_dict({"logit_max": logit_max}))


def test_drs_evaluates_only_running_rows_and_matches_chains_alone() -> None:
    base = gaussian_target_pair()
    g = CountingG()
    pair = base._replace(generator=g)
    # a generous max makes the number of tries per chain spread widely (geometric), the case masking wastes
    algo = _drs(pair, gaussian_target_logit_max() + 2.0)
    b, tries = 64, 400
    streams = Streams.for_request(5, b)
    run = run_chains(algo, streams, algo.make_params({}, b, "cpu"), tries)
    longest = int(run.steps.max())
    assert longest > 50  # the spread this test is about exists
    # masked stepping would evaluate b rows at every one of `longest` steps; compaction must save at least the
    # share of rows that finish before half the batch has (COMPACT_BELOW), i.e. well over 30% here
    assert g.rows < 0.7 * b * (longest + 1), (g.rows, b * (longest + 1))
    assert COMPACT_BELOW <= 0.5
    # proposal blocks (sized by the acceptance rate) score few tries after a row accepted
    assert g.rows <= 1.5 * int(run.extras["tries"].sum())
    for i in (0, 17, 63):
        alone = run_chains(algo, Streams.for_request(5, 1, first_chain=i), algo.make_params({}, 1, "cpu"), tries)
        assert torch.equal(alone.output.x, run.output.x[i : i + 1])
        assert torch.equal(alone.steps, run.steps[i : i + 1])
        assert torch.equal(alone.stats.accepted, run.stats.accepted[i : i + 1])


def test_sir_runs_exactly_its_candidates() -> None:
    g = CountingG()
    pair = gaussian_target_pair()._replace(generator=g)
    entry = SAMPLERS["sir"]
    algo = entry.cls(pair, entry.options_cls())
    b, n = 8, 37
    run_chains(algo, Streams.for_request(1, b), algo.make_params({}, b, "cpu"), n)
    assert g.rows == b * n  # N candidates per chain, no extra masked step
