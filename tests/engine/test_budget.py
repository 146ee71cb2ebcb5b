"""Step budgets on a simulated device: the probe's limit, headroom, OOM handling, the per-key cache, and the engine
admitting no more rows than the budget allows (CPU only; ``tests/cuda/test_budget_cuda.py`` runs the real probe).

The simulated device is a linear memory model: a step over n rows peaks at ``fixed + per_row × n`` bytes over what
is allocated, and more than ``oom_rows`` rows raise ``torch.cuda.OutOfMemoryError``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
from prometheus_client import CollectorRegistry

from service.config import Settings
from service.engine import budget as budget_mod
from service.engine.budget import (
    MAX_PROBE_ROWS,
    MIN_STEP_ROWS,
    CudaMemory,
    StepBudget,
    probe_max_rows,
    sampler_step_run,
)
from service.engine.engine import Engine, EngineConfig
from service.engine.errors import ModelFailed
from service.engine.stats import NullSink
from service.engine.ticket import PoolKey, Work
from service.engine.worker import DeviceWorker, EngineObserver, WorkerLimits
from service.metrics import PrometheusSink
from service.samplers import SAMPLERS, GanPair
from tests.engine.helpers import GATE_TIMEOUT_S, GAUSS, Recorder, config, gauss_logit, work

T = GATE_TIMEOUT_S
ALGO: Any = object()  # the simulated devices never call the sampler
KIB = 1024


class FakeDevice:
    """A simulated GPU implementing :class:`~service.engine.budget.DeviceMemory`, and the step it runs."""

    oom_error: type[BaseException] = torch.cuda.OutOfMemoryError

    def __init__(self, free: int, per_row: int, fixed: int = 0, oom_rows: int | None = None,
                 allocated: int = 0) -> None:
        self.free, self.per_row, self.fixed, self.oom_rows = free, per_row, fixed, oom_rows
        self.allocated = allocated
        self.peak = allocated
        self.runs: list[int] = []
        self.released = 0

    def run(self, rows: int) -> None:
        self.runs.append(rows)
        if self.oom_rows is not None and rows > self.oom_rows:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated) at {rows} rows")
        self.peak = max(self.peak, self.allocated + self.fixed + self.per_row * rows)

    def step_peak(self, rows: int) -> int:
        return self.fixed + self.per_row * rows

    # DeviceMemory
    def free_bytes(self) -> int:
        return self.free

    def allocated_bytes(self) -> int:
        return self.allocated

    def reset_peak(self) -> None:
        self.peak = self.allocated

    def peak_bytes(self) -> int:
        return self.peak

    def release_cache(self) -> None:
        self.released += 1


# --- the probe ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fraction", "fixed", "expected"), [(0.8, 0, 800), (0.5, 0, 500), (0.8, 50 * KIB, 750)])
def test_limit_is_the_largest_row_count_whose_projected_peak_fits_the_headroom(
    fraction: float, fixed: int, expected: int
) -> None:
    dev = FakeDevice(free=1000 * KIB, per_row=KIB, fixed=fixed, allocated=3 * 2**20)  # allocated: not counted
    r = probe_max_rows(dev.run, dev, fraction)
    assert r.rows == expected
    assert r.budget_bytes == int(1000 * KIB * fraction)
    assert r.bytes_per_row == pytest.approx(KIB) and r.fixed_bytes == pytest.approx(fixed)
    assert r.failed_rows is None
    assert dev.runs == [2**i for i in range(len(dev.runs))]  # doubling from 1
    assert all(dev.step_peak(n) <= r.budget_bytes for n in dev.runs)  # never ran beyond the budget
    assert dev.step_peak(r.rows) <= r.budget_bytes < dev.step_peak(r.rows + 1)


def test_an_out_of_memory_error_ends_the_probe_and_never_propagates() -> None:
    dev = FakeDevice(free=2**40, per_row=KIB, oom_rows=100)  # the memory model says lots fit; the device disagrees
    r = probe_max_rows(dev.run, dev)
    assert r.rows == 100  # 64 fits, 128 fails; bisection: 96 fits, 112 and 104 fail, 100 fits
    assert r.failed_rows == 104
    assert dev.runs == [1, 2, 4, 8, 16, 32, 64, 128, 96, 112, 104, 100]
    assert dev.released == 3  # the cache is released after every OOM


def test_out_of_memory_at_one_row_gives_the_floor() -> None:
    dev = FakeDevice(free=2**30, per_row=KIB, oom_rows=0)
    r = probe_max_rows(dev.run, dev)
    assert r.rows == MIN_STEP_ROWS and r.measured == () and r.failed_rows == 1 and math.isinf(r.bytes_per_row)


def test_a_peak_over_the_budget_that_the_projection_missed_is_not_used() -> None:
    class Superlinear(FakeDevice):
        def run(self, rows: int) -> None:
            super().run(rows)
            if rows >= 256:  # a workspace that appears only at large batches
                self.peak += 10 * 2**20

    dev = Superlinear(free=1000 * KIB, per_row=KIB)
    r = probe_max_rows(dev.run, dev, 0.8)
    assert r.failed_rows is not None and r.rows < 256
    assert r.rows >= 240  # 128 fits; bisection toward 256 (to 1/16 of the gap)


def test_the_cap_bounds_the_limit_and_the_probe() -> None:
    dev = FakeDevice(free=2**40, per_row=1)
    r = probe_max_rows(dev.run, dev, max_rows=48)
    assert r.rows == 48 and max(dev.runs) == 48


def test_errors_other_than_out_of_memory_propagate_from_the_probe() -> None:
    dev = FakeDevice(free=2**30, per_row=KIB)

    def broken(rows: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        probe_max_rows(broken, dev)


@pytest.mark.parametrize("bad", [{"memory_fraction": 0.0}, {"memory_fraction": 1.5}, {"max_rows": 0}])
def test_probe_rejects_bad_arguments(bad: dict[str, float]) -> None:
    dev = FakeDevice(free=2**30, per_row=KIB)
    with pytest.raises(ValueError, match=next(iter(bad))):
        probe_max_rows(dev.run, dev, **bad)  # type: ignore[arg-type]


def test_cuda_memory_reads_the_caching_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    """CudaMemory over ``torch.cuda``'s queries, monkeypatched to a simulated device (no GPU needed)."""
    dev = FakeDevice(free=800 * KIB, per_row=KIB, oom_rows=300, allocated=5 * KIB)
    cached = 200 * KIB  # reserved by the caching allocator but unused: a step can have it too
    calls: list[str] = []
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "mem_get_info", lambda d=None: (dev.free, 2**34))
    monkeypatch.setattr(cuda, "memory_reserved", lambda d=None: dev.allocated + cached)
    monkeypatch.setattr(cuda, "memory_allocated", lambda d=None: dev.allocated)
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda d=None: dev.peak)
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda d=None: dev.reset_peak())
    monkeypatch.setattr(cuda, "synchronize", lambda d=None: calls.append("sync"))
    monkeypatch.setattr(cuda, "empty_cache", lambda: calls.append("empty_cache"))
    mem = CudaMemory("cuda:0")
    assert mem.free_bytes() == 1000 * KIB
    r = probe_max_rows(dev.run, mem, 0.8)
    assert r.budget_bytes == 800 * KIB
    # 256 fits, 512 runs out of memory; bisection: 384 and 320 fail, 288 fits, 304 fails
    assert r.rows == 288 and r.failed_rows == 304
    assert "empty_cache" in calls and "sync" in calls


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_the_real_step_run_works_for_every_sampler(sampler: str) -> None:
    algo: Any = SAMPLERS[sampler].cls(GAUSS, SAMPLERS[sampler].options_cls())
    run = sampler_step_run(algo, "cpu")
    for rows in (1, 3):
        run(rows)


def test_default_memory_probes_cuda_devices_only() -> None:
    assert budget_mod.default_memory("cpu") is None and budget_mod.default_memory("cpu:1") is None
    assert isinstance(budget_mod.default_memory("cuda:1"), CudaMemory)


# --- the per-key cache ------------------------------------------------------------------------------------------


def key(model: str = "gauss@1", device: str = "cuda:0", options: object = None) -> PoolKey:
    return PoolKey(model, "mh", options, device)


def simulated(devices: dict[str, FakeDevice], max_batch: int = 1024, **kw: object) -> StepBudget:
    """A StepBudget that probes every device named in ``devices`` (even a 'cpu:1') with its FakeDevice."""
    return StepBudget(max_batch, memory_for=lambda d: devices.get(d),
                      run_for=lambda algo, d: devices[d].run, **kw)  # type: ignore[arg-type]


def test_the_limit_is_probed_once_per_key() -> None:
    dev = FakeDevice(free=1000 * KIB, per_row=KIB)
    b = simulated({"cuda:0": dev}, memory_fraction=0.5)
    algo = ALGO
    assert b.rows(key(), algo) == 500
    probes = len(dev.runs)
    assert b.rows(key(), algo) == 500
    assert len(dev.runs) == probes  # cached
    dev.per_row = 2 * KIB  # another model, or other options: another key, another probe
    assert b.rows(key(options="other"), algo) == 250
    assert b.rows(key(model="other@1"), algo) == 250
    assert set(b.probes) == {key(), key(options="other"), key(model="other@1")}
    assert b.limits() == {("gauss@1", "mh", "cuda:0"): 250, ("other@1", "mh", "cuda:0"): 250}


def test_cpu_is_not_probed_and_never_binds_by_default() -> None:
    ran: list[str] = []
    b = StepBudget(64, block_proposals=4096, run_for=lambda algo, d: lambda rows: ran.append(d))
    assert b.rows(key(device="cpu"), ALGO) == 4096  # a full proposal block
    assert StepBudget(64).rows(key(device="cpu:1"), ALGO) == 64  # a full pool
    assert ran == []
    assert StepBudget(64, max_step_rows=10).rows(key(device="cpu"), ALGO) == 10


def test_max_step_rows_caps_the_probe() -> None:
    dev = FakeDevice(free=2**40, per_row=1)
    assert simulated({"cuda:0": dev}, max_step_rows=100).rows(key(), ALGO) == 100
    big = FakeDevice(free=2**50, per_row=1)
    assert simulated({"cuda:0": big}).rows(key(), ALGO) == MAX_PROBE_ROWS


def test_a_probe_that_fails_for_another_reason_falls_back_and_does_not_raise() -> None:
    def broken(algo: object, device: str) -> budget_mod.StepRun:
        def run(rows: int) -> None:
            raise RuntimeError("the model cannot step")
        return run

    b = StepBudget(32, memory_for=lambda d: FakeDevice(2**30, KIB), run_for=broken)  # type: ignore[arg-type]
    assert b.rows(key(), ALGO) == b.default_rows


def test_shrink_after_halves_on_out_of_memory_only() -> None:
    dev = FakeDevice(free=1000 * KIB, per_row=KIB)
    b = simulated({"cuda:0": dev}, memory_fraction=0.8)
    k = key()
    assert b.rows(k, ALGO) == 800
    assert b.shrink_after(k, RuntimeError("not memory")) is None
    assert b.rows(k, ALGO) == 800
    released = dev.released
    assert b.shrink_after(k, torch.cuda.OutOfMemoryError("oom")) == 400
    assert dev.released == released + 1
    assert b.rows(k, ALGO) == 400 and b.limits()[("gauss@1", "mh", "cuda:0")] == 400
    for _ in range(20):
        b.shrink_after(k, torch.cuda.OutOfMemoryError("oom"))
    assert b.rows(k, ALGO) == MIN_STEP_ROWS


def test_the_host_allocator_refusing_a_cpu_step_halves_its_limit() -> None:
    """On CPU nothing is probed, but a step the allocator refuses (torch's RuntimeError, or MemoryError) halves the
    key's limit, so later requests run in smaller steps instead of failing again."""
    b = StepBudget(1024, block_proposals=4096)
    k = key(device="cpu")
    assert b.rows(k, ALGO) == 4096
    cpu_oom = RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 12884901888 bytes. Error code 12 (Cannot allocate memory)")
    assert b.shrink_after(k, cpu_oom) == 2048
    assert b.shrink_after(k, MemoryError()) == 1024
    assert b.shrink_after(k, RuntimeError("shape mismatch")) is None
    assert b.rows(k, ALGO) == 1024 and b.limits()[("gauss@1", "mh", "cpu")] == 1024


def test_settings_reach_the_engine_budget() -> None:
    s = Settings(device_memory_fraction=0.6, max_step_rows=77, max_batch_chains=32)
    e = Engine(EngineConfig.from_settings(s))
    assert e.budget.memory_fraction == 0.6 and e.budget.max_step_rows == 77 and e.budget.max_batch_chains == 32
    assert e.budget.block_proposals == s.block_proposals
    assert all(w.budget is e.budget for w in e.workers.values())
    alone = DeviceWorker("cpu", WorkerLimits(32, 1, 0.5, 512), e.admission, NullSink(), EngineObserver(),
                         lambda: None)
    assert alone.budget.default_rows == 512  # never binds a CPU pool: neither admission nor its blocks
    with pytest.raises(ValueError, match="device_memory_fraction"):
        Settings(device_memory_fraction=0)


# --- the engine on simulated devices --------------------------------------------------------------------------------


def on(w: Work, device: str) -> Work:
    return dataclasses.replace(w, key=w.key._replace(device=device))


def test_admission_never_exceeds_the_budget_and_results_do_not_change() -> None:
    dev = FakeDevice(free=10 * KIB, per_row=KIB)  # budget 8 KiB: 8 rows
    rec = Recorder()
    sink = PrometheusSink(CollectorRegistry())
    limited = Engine(config(max_batch=64), sink, rec, simulated({"cpu": dev}, 64, memory_fraction=0.8))
    free = Engine(config(max_batch=64))
    limited.start()
    free.start()
    try:
        a = limited.submit(work(n=20, steps=5, seed=3)).future.result(T)
        b = free.submit(work(n=20, steps=5, seed=3)).future.result(T)
        assert max(rec.rows()) == 8  # 20 chains: 8, 8, then 4 (the pool may run those 4 in proposal blocks)
        assert all(torch.equal(x, y) for x, y in zip(a.output, b.output, strict=True))  # same chains
        for x, y in zip(a.stats, b.stats, strict=True):  # sums may differ in rounding: blocks add in another order
            torch.testing.assert_close(x, y)
        assert limited.budget.limits() == {("gauss@1", "mh", "cpu"): 8}
        body = sink.render()[0].decode()
        assert 'gansampler_pool_max_rows{device="cpu",model="gauss@1",sampler="mh"} 8.0' in body
    finally:
        limited.stop()
        free.stop()


def oom_above(rows: int) -> GanPair:
    """A pair whose D runs out of (simulated) device memory on batches larger than ``rows``."""

    def logit(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > rows:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated) at {x.shape[0]} rows")
        return gauss_logit(x)

    return GanPair(lambda z: z, logit, (1,))


def test_out_of_memory_at_run_time_halves_the_limit_and_fails_only_that_pool() -> None:
    rec = Recorder()
    e = Engine(config(max_batch=64), None, rec, StepBudget(64, max_step_rows=8))
    e.start()
    tight = oom_above(5)
    try:
        rec.hold(lambda ev: ev.key.model == "gauss@1")  # both requests are queued before either runs a step
        other = e.submit(work(n=6, steps=10, seed=1))
        assert rec.held.wait(T)
        failing = e.submit(work(n=8, steps=3, seed=2, pair=tight, model="tight@1"))
        rec.release()
        with pytest.raises(ModelFailed):
            failing.future.result(T)
        assert e.budget.limits()[("tight@1", "mh", "cpu")] == 4  # 8 rows ran out of memory: halved
        assert other.future.result(T).output.x.shape[0] == 6  # the other pool was not harmed
        again = e.submit(work(n=8, steps=3, seed=2, pair=tight, model="tight@1")).future.result(T)
        assert again.output.x.shape[0] == 8
        assert max(ev.rows for ev in rec.steps if ev.key.model == "tight@1") == 4
    finally:
        e.stop()


def test_two_devices_two_models_each_with_its_own_budget() -> None:
    """Several devices in one engine (named cpu:0 and cpu:1, simulated with different memory) and several models
    per device: every (model, device) pool gets its own limit."""
    devices = {"cpu:0": FakeDevice(free=20 * KIB, per_row=KIB), "cpu:1": FakeDevice(free=5 * KIB, per_row=KIB)}
    rec = Recorder()
    e = Engine(config(max_batch=64, devices=("cpu:0", "cpu:1")), None, rec,
               simulated(devices, 64, memory_fraction=0.8))
    e.start()
    try:
        tickets = [e.submit(on(work(n=30, steps=4, seed=s, model=m), d))
                   for s, (m, d) in enumerate([(m, d) for m in ("a@1", "b@1") for d in devices])]
        for t in tickets:
            assert t.future.result(T).output.x.shape[0] == 30
        assert e.budget.limits() == {("a@1", "mh", "cpu:0"): 16, ("b@1", "mh", "cpu:0"): 16,
                                     ("a@1", "mh", "cpu:1"): 4, ("b@1", "mh", "cpu:1"): 4}
        most = {(ev.key.model, ev.key.device): 0 for ev in rec.steps}
        for ev in rec.steps:
            most[(ev.key.model, ev.key.device)] = max(most[(ev.key.model, ev.key.device)], ev.rows)
        assert most == {("a@1", "cpu:0"): 16, ("b@1", "cpu:0"): 16, ("a@1", "cpu:1"): 4, ("b@1", "cpu:1"): 4}
        assert e.least_loaded(["cpu:0", "cpu:1"]) in devices
    finally:
        e.stop()
