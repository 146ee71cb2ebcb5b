"""The continuous-batching engine over analytic pairs: merging, fairness, batch independence, limits, failures.

Synchronisation is by events (the Recorder holds the worker inside a step) and futures, never by sleeping.
"""

from __future__ import annotations

import threading

import pytest
import torch

from service.engine.errors import Cancelled, DeadlineExceeded, ModelFailed, Overloaded
from service.engine.ticket import Priority
from service.samplers import GanPair
from tests.engine.helpers import (
    FAILING,
    GATE_TIMEOUT_S,
    GAUSS,
    Recorder,
    config,
    engine,
    gauss_logit,
    result_equal,
    work,
)

T = GATE_TIMEOUT_S


def test_requests_join_a_running_pool_at_the_next_step() -> None:
    rec = Recorder()
    e = engine(observer=rec)
    try:
        rec.hold(lambda ev: True)  # the worker waits inside the first step of the first request
        first = e.submit(work(n=4, steps=20, seed=1))
        assert rec.held.wait(T)
        others = [e.submit(work(n=4, steps=20, seed=s)) for s in (2, 3, 4)]
        rec.release()
        for t in (first, *others):
            t.future.result(T)
        # first ran 1 step alone, then all 16 chains stepped together until first's 20th step, then 12 remained
        assert rec.rows() == [4] + [16] * 19 + [12]
        assert e.admission.queued == 0
    finally:
        e.stop()


def test_batch_never_exceeds_max_batch_chains_and_partial_admission_is_bit_identical() -> None:
    rec = Recorder()
    small = engine(config(max_batch=4), observer=rec)
    big = engine(config(max_batch=64))
    try:
        a = small.submit(work(n=10, steps=7, seed=5)).future.result(T)
        b = big.submit(work(n=10, steps=7, seed=5)).future.result(T)
        assert max(rec.rows()) == 4
        assert sum(rec.rows()) == 10 * 7
        assert result_equal(a, b)
    finally:
        small.stop()
        big.stop()


@pytest.mark.parametrize("sampler", ["mh", "raw", "sir", "drs"])
def test_same_seed_same_samples_alone_and_under_concurrent_load(sampler: str) -> None:
    e = engine(config(max_batch=16))
    try:
        alone = e.submit(work(sampler, n=6, seed=42, steps=30)).future.result(T)
        rec = Recorder()
        e2 = engine(config(max_batch=16), observer=rec)
        try:
            one_shot = sampler == "raw"  # never steps: nothing to hold, all join one init
            if not one_shot:
                rec.hold(lambda ev: True)
            noise = [e2.submit(work(sampler, n=5, seed=s, steps=10 + s)) for s in range(3)]
            assert one_shot or rec.held.wait(T)
            mine = e2.submit(work(sampler, n=6, seed=42, steps=30))  # joins mid-run, split over iterations
            more = [e2.submit(work(sampler, n=3, seed=100 + s, steps=40)) for s in range(2)]
            rec.release()
            loaded = mine.future.result(T)
            for t in noise + more:
                t.future.result(T)
        finally:
            e2.stop()
        assert result_equal(alone, loaded)
        assert torch.isfinite(alone.output.x).all()
    finally:
        e.stop()


def test_per_row_params_and_lengths_share_one_batch() -> None:
    """rep requests with different step sizes and chain lengths run in one pool, each as if alone."""
    sizes = {1: 0.001, 2: 0.05, 3: 0.2}
    lengths = {1: 12, 2: 25, 3: 40}
    alone = engine()
    try:
        ref = {s: alone.submit(work("rep", n=3, seed=s, steps=lengths[s], params={"step_size": sizes[s]}))
               .future.result(T) for s in sizes}
    finally:
        alone.stop()
    rec = Recorder()
    e = engine(observer=rec)
    try:
        rec.hold(lambda ev: True)
        first = e.submit(work("rep", n=3, seed=1, steps=lengths[1], params={"step_size": sizes[1]}))
        assert rec.held.wait(T)
        rest = {s: e.submit(work("rep", n=3, seed=s, steps=lengths[s], params={"step_size": sizes[s]}))
                for s in (2, 3)}
        rec.release()
        got = {1: first.future.result(T), **{s: t.future.result(T) for s, t in rest.items()}}
        assert max(rec.rows()) == 9
        for s in sizes:
            assert result_equal(ref[s], got[s]), s
            assert int(got[s].stats.proposals[0]) == lengths[s]
        assert not torch.equal(got[1].output.z, got[2].output.z)
    finally:
        e.stop()


def test_short_requests_finish_before_a_long_one_that_started_first() -> None:
    rec = Recorder()
    e = engine(observer=rec)
    order: list[str] = []
    lock = threading.Lock()

    def note(name: str):
        def cb(_: object) -> None:
            with lock:
                order.append(name)
        return cb

    try:
        rec.hold(lambda ev: True)
        long = e.submit(work(n=2, steps=500, seed=1))
        long.future.add_done_callback(note("long"))
        assert rec.held.wait(T)
        shorts = [e.submit(work(n=2, steps=10, seed=s)) for s in (2, 3, 4)]
        for i, s in enumerate(shorts):
            s.future.add_done_callback(note(f"short{i}"))
        rec.release()
        for s in shorts:
            s.future.result(T)
        long_running_when_shorts_done = not long.future.done()
        long.future.result(T)
        assert long_running_when_shorts_done
        assert order[-1] == "long" and len(order) == 4
    finally:
        e.stop()


def test_job_chains_leave_room_for_interactive_requests() -> None:
    rec = Recorder()
    e = engine(config(max_batch=8, job_fraction=0.5), observer=rec)
    try:
        rec.hold(lambda ev: True)
        job = e.submit(work(n=8, steps=150, seed=1, priority=Priority.JOB))
        assert rec.held.wait(T)
        assert rec.rows() == [4]  # a job holds at most half of the pool's rows
        short = e.submit(work(n=4, steps=10, seed=2))
        rec.release()
        short.future.result(T)
        assert not job.future.done()
        job.future.result(T)
        assert max(rec.rows()) <= 8
        assert e.admission.queued == 0  # jobs are not counted by admission control
    finally:
        e.stop()


def test_overloaded_when_queued_chain_steps_exceed_the_limit() -> None:
    rec = Recorder()
    e = engine(config(queue=100), observer=rec)
    try:
        rec.hold(lambda ev: True)
        first = e.submit(work(n=4, steps=20))  # 80 chain-steps
        assert rec.held.wait(T)
        with pytest.raises(Overloaded) as info:
            e.submit(work(n=2, steps=20))  # 80 - 4 run + 40 > 100
        assert info.value.retry_after >= 1 and info.value.limit == 100
        rec.release()
        first.future.result(T)
        assert e.admission.queued == 0
        e.submit(work(n=2, steps=20)).future.result(T)  # room again
    finally:
        e.stop()


def test_deadline_drops_the_chains_and_gives_back_the_admission() -> None:
    e = engine()
    try:
        t = e.submit(work(n=2, steps=10**7, timeout_s=0.05))
        with pytest.raises(DeadlineExceeded):
            t.future.result(T)
        assert e.admission.queued == 0
        assert t.steps_done < t.total_chain_steps
    finally:
        e.stop()


def test_cancelled_chains_are_dropped_at_the_next_step() -> None:
    rec = Recorder()
    e = engine(observer=rec)
    try:
        keep = e.submit(work(n=2, steps=30, seed=1))
        rec.hold(lambda ev: True)
        gone = e.submit(work(n=4, steps=10**6, seed=2))
        assert rec.held.wait(T)
        e.cancel(gone, "client disconnected")
        steps_before = len(rec.steps)
        rec.release()
        with pytest.raises(Cancelled):
            gone.future.result(T)
        keep.future.result(T)
        after = rec.steps[steps_before:]
        assert after and all(gone.id not in ev.tickets for ev in after)
        assert e.admission.queued == 0
    finally:
        e.stop()


def test_a_failing_model_fails_only_its_own_pool() -> None:
    broken = threading.Event()

    def flaky(x: torch.Tensor) -> torch.Tensor:
        if broken.is_set():
            raise RuntimeError("discriminator exploded")
        return gauss_logit(x)

    flaky_pair = GanPair(lambda z: z, flaky, (1,))
    rec = Recorder()
    e = engine(observer=rec)
    try:
        rec.hold(lambda ev: ev.key.model == "flaky@1")
        healthy = e.submit(work(n=3, steps=200, seed=1))
        victim = e.submit(work(n=3, steps=200, seed=2, pair=flaky_pair, model="flaky@1"))
        assert rec.held.wait(T)
        broken.set()
        rec.release()
        with pytest.raises(ModelFailed, match="flaky@1"):
            victim.future.result(T)
        assert torch.isfinite(healthy.future.result(T).output.x).all()
        with pytest.raises(ModelFailed):  # fails in init too, and the worker keeps serving
            e.submit(work(n=2, steps=5, pair=FAILING, model="failing@1")).future.result(T)
        broken.clear()
        e.submit(work(n=2, steps=5, seed=3, pair=flaky_pair, model="flaky@1")).future.result(T)
        assert e.admission.queued == 0
    finally:
        e.stop()


def test_round_robin_serves_every_pool() -> None:
    rec = Recorder()
    e = engine(observer=rec)
    other = GanPair(lambda z: z, gauss_logit, (1,))
    try:
        rec.hold(lambda ev: True)
        a = e.submit(work(n=2, steps=50, seed=1))
        assert rec.held.wait(T)
        b = e.submit(work(n=2, steps=50, seed=1, pair=other, model="other@1"))
        rec.release()
        a.future.result(T)
        b.future.result(T)
        models = [ev.key.model for ev in rec.steps]
        first_b = models.index("other@1")
        assert first_b <= 2  # b did not wait for a to finish
        assert models[first_b:first_b + 6] == ["other@1", "gauss@1"] * 3  # alternating
    finally:
        e.stop()


def test_traces_and_acceptance_curve_shapes() -> None:
    e = engine()
    try:
        r = e.submit(work(n=3, steps=20, trace_every=5)).future.result(T)
        assert r.traces is not None
        assert r.traces.logit.shape == (3, 5)  # t = 0, 5, 10, 15, 20
        assert r.traces.curve.shape == (20,)
        assert torch.isfinite(r.traces.logit).all()
        assert torch.equal(r.traces.logit[:, -1], r.output.logit.float())
    finally:
        e.stop()


def test_submit_runs_no_torch_op_in_the_callers_thread() -> None:
    """The event loop submits. A torch op there that goes parallel (filling a large request's trace buffers did)
    gives the loop thread an OpenMP team of its own beside the worker's, and every later step ran about 2x slower
    on a served MLP; the buffers are the worker's to allocate."""
    from tests.torch_ops import RecordOps

    e = engine()
    try:
        w = work(n=64, steps=40, trace_every=1)
        with RecordOps(keep_detach=True) as rec:
            ticket = e.submit(w)
        assert rec.ops == [], rec.ops
        r = ticket.future.result(T)
        assert r.traces is not None and r.traces.logit.shape == (64, 41)
        assert torch.isfinite(r.traces.logit).all()
    finally:
        e.stop()


def test_mh_on_the_analytic_pair_targets_n_1_half() -> None:
    e = engine(config(max_batch=512))
    try:
        r = e.submit(work(n=2000, steps=60, seed=3)).future.result(T)
        x = r.output.x.flatten()
        assert abs(float(x.mean()) - 1.0) < 0.06
        assert abs(float(x.std()) - 0.5) < 0.05
        assert GAUSS.latent_shape == (1,)
    finally:
        e.stop()
