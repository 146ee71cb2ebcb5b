"""Blocks in the engine: a pool of mh, drs, sir, rep or ddls rows runs several steps per pool step, each row only its
own remaining steps, with the same samples and statistics as one step at a time, alone or under load."""

from __future__ import annotations

import pytest
import torch

from service.engine.pool import Admission, ChainPool
from service.engine.ticket import Ticket
from tests.engine.helpers import GATE_TIMEOUT_S, Recorder, config, engine, result_equal, work

BLOCKS = 64  # proposal rows per pool step in these tests
T = GATE_TIMEOUT_S


@pytest.mark.parametrize("sampler", ["mh", "sir", "drs", "rep", "ddls"])
def test_blocks_give_the_samples_of_single_steps_alone_and_under_load(sampler: str) -> None:
    single = engine(config(max_batch=16, block_proposals=1))
    try:
        ref = single.submit(work(sampler, n=6, seed=42, steps=30)).future.result(T)
    finally:
        single.stop()
    alone_e = engine(config(max_batch=16, block_proposals=BLOCKS))
    try:
        alone = alone_e.submit(work(sampler, n=6, seed=42, steps=30)).future.result(T)
    finally:
        alone_e.stop()
    rec = Recorder()
    loaded_e = engine(config(max_batch=16, block_proposals=BLOCKS), observer=rec)
    try:
        rec.hold(lambda ev: True)
        noise = [loaded_e.submit(work(sampler, n=5, seed=s, steps=10 + s)) for s in range(3)]
        assert rec.held.wait(T)
        mine = loaded_e.submit(work(sampler, n=6, seed=42, steps=30))  # joins mid-run, at other block widths
        more = [loaded_e.submit(work(sampler, n=3, seed=100 + s, steps=40)) for s in range(2)]
        rec.release()
        loaded = mine.future.result(T)
        for t in noise + more:
            t.future.result(T)
        assert loaded_e.admission.queued == 0
    finally:
        loaded_e.stop()
    assert result_equal(ref, alone)
    assert result_equal(ref, loaded)


def test_a_pool_step_runs_a_block_of_steps_within_the_budget() -> None:
    rec = Recorder()
    e = engine(config(max_batch=16, block_proposals=BLOCKS), observer=rec)
    try:
        e.submit(work("mh", n=4, seed=1, steps=40)).future.result(T)
        # 4 rows x 16 steps = 64 proposal rows per pool step: 16 + 16 + 8 steps
        assert rec.rows() == [4, 4, 4]
        assert e.admission.queued == 0
    finally:
        e.stop()


def test_traced_requests_step_one_at_a_time() -> None:
    rec = Recorder()
    e = engine(config(max_batch=16, block_proposals=BLOCKS), observer=rec)
    try:
        res = e.submit(work("mh", n=2, seed=1, steps=12, trace_every=3)).future.result(T)
        assert rec.rows() == [2] * 12
        assert res.traces is not None
    finally:
        e.stop()


def test_block_step_counts_every_chain_step_and_each_tickets_progress() -> None:
    w = work("sir", n=3, seed=7, steps=10)
    ticket = Ticket(w)
    pool = ChainPool(w.key, w.algo, block_proposals=12)  # 3 rows x 4 steps
    pool.admit([Admission(ticket, 0, 3)])
    counts = pool.step()
    assert counts.rows == 3 and counts.chain_steps == 12 and counts.proposals == 12
    assert ticket.steps_done == 12
    assert pool.batch is not None and torch.equal(pool.batch.t, torch.full((3,), 4))
    pool.max_step_rows = 3  # a device budget of 3 rows per call: one step per row
    assert pool.width() == 1


def test_the_served_default_block_is_the_samplers_default() -> None:
    from service.config import DEFAULT_BLOCK_PROPOSALS, Settings
    from service.engine.engine import EngineConfig
    from service.samplers.block import BLOCK_PROPOSALS

    assert DEFAULT_BLOCK_PROPOSALS == BLOCK_PROPOSALS
    assert EngineConfig.from_settings(Settings()).block_proposals == BLOCK_PROPOSALS


def test_samplers_with_a_network_call_per_step_run_short_blocks() -> None:
    """rep's every step is a G + D call: a block of it holds up waiting requests, so it stops at STEP_BLOCK_STEPS."""
    from service.samplers.block import STEP_BLOCK_STEPS

    rec = Recorder()
    e = engine(config(max_batch=16, block_proposals=4096), observer=rec)
    try:
        e.submit(work("rep", n=1, seed=1, steps=2 * STEP_BLOCK_STEPS + 3)).future.result(T)
        assert rec.rows() == [1, 1, 1]  # 16 + 16 + 3 steps
    finally:
        e.stop()
    assert work("mh", n=1).algo.block_limit() is None  # one network call per block, however wide
