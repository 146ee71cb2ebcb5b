"""Step budgets: the most proposal rows one sampler step of a pool may evaluate on its device.

A chain pool steps every row in one ``algo.step``; on a GPU the batch that fits is bounded by the device's memory,
which depends on the model, the sampler, its options and what else the device holds. :class:`StepBudget` finds that
bound once per pool key (model, sampler, options, device, load generation), caches it, and halves it when a step
runs out of memory anyway. The worker sets it on the pool as ``pool.max_step_rows``; admission never fills a pool
beyond ``min(max_batch_chains, max_step_rows)`` rows and the pool sizes its per-step block of proposals with it.

On CUDA the bound is measured (:func:`probe_max_rows`): the real ``init`` + ``step`` runs at doubling row counts
1, 2, 4, ... while ``torch.cuda.max_memory_allocated`` records each run's peak. A line ``fixed + per_row × rows``
through the two largest runs projects the peak; the limit is the largest row count whose projected peak stays
under ``budget = free memory × memory_fraction``. No run is started whose projected peak exceeds the budget. A
``torch.cuda.OutOfMemoryError`` during the probe (the cache is then released) or a measured peak over the budget
never propagates: a few bisecting runs follow, and the limit is the largest row count measured to fit.

On CPU (and MPS) nothing is probed: the limit is ``max_step_rows`` when set, else ``max(max_batch_chains,
block_proposals)``: a full pool or a full proposal block, whichever is larger. It never binds, so by default a CPU
pool admits and blocks exactly as ``max_batch_chains`` and ``block_proposals`` alone allow, until the host's
allocator refuses a step (:func:`is_host_oom`): that halves the key's limit as a GPU's out-of-memory error does.

Everything device-specific sits behind :class:`DeviceMemory`, so tests on a CPU-only machine drive the probe with a
simulated device (a fake memory model, or ``torch.cuda``'s queries monkeypatched under :class:`CudaMemory`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import torch

from service.config import DEFAULT_DEVICE_MEMORY_FRACTION
from service.engine.ticket import PoolKey
from service.samplers.base import SamplingAlgorithm
from service.samplers.rng import Streams

log = logging.getLogger(__name__)

MAX_PROBE_ROWS = 1 << 16
"""The probe never measures (nor allows) more rows per step than this, however much memory is free."""
FIRST_PROBE_ROWS = 1
"""The probe's first row count; each later run doubles it."""
PROBE_BISECTIONS = 4
"""Runs spent narrowing the gap between the last row count that fitted and the first that did not (to 1/16)."""
PROBE_SEED = 0
"""Seed of the probe's throw-away chains (their numbers do not matter; their memory does)."""
MIN_STEP_ROWS = 1
"""Floor of every limit: a pool can always run one row (if even that fails, its requests fail)."""

StepRun = Callable[[int], None]
"""Runs ``init`` + one ``step`` over that many rows on the device and drops the result."""


class DeviceMemory(Protocol):
    """The allocator queries the probe needs, in bytes. :class:`CudaMemory` is the real one."""

    oom_error: type[BaseException]

    def free_bytes(self) -> int:
        """Bytes a new allocation can still get (free on the device plus cached but unused)."""
        ...

    def allocated_bytes(self) -> int:
        """Bytes held by live tensors now."""
        ...

    def reset_peak(self) -> None:
        """Start a new peak measurement."""
        ...

    def peak_bytes(self) -> int:
        """Most bytes held by live tensors since :meth:`reset_peak`."""
        ...

    def release_cache(self) -> None:
        """Give cached, unused blocks back to the device (after an out-of-memory error)."""
        ...


class CudaMemory:
    """:class:`DeviceMemory` of one CUDA device, from ``torch.cuda``'s caching allocator."""

    oom_error: type[BaseException] = torch.cuda.OutOfMemoryError

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)

    def free_bytes(self) -> int:
        free, _total = torch.cuda.mem_get_info(self.device)
        cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return int(free) + int(cached)

    def allocated_bytes(self) -> int:
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def reset_peak(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak_bytes(self) -> int:
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_allocated(self.device))

    def release_cache(self) -> None:
        torch.cuda.empty_cache()


def default_memory(device: str) -> DeviceMemory | None:
    """The memory to probe for ``device``: CUDA devices only (CPU and MPS are not probed)."""
    return CudaMemory(device) if torch.device(device).type == "cuda" else None


def sampler_step_run(algo: SamplingAlgorithm, device: str) -> StepRun:
    """A :data:`StepRun` of ``algo``: its real ``init`` and one ``step`` at t = 0, with default params."""
    dev = torch.device(device)

    def run(rows: int) -> None:
        streams = Streams.for_request(PROBE_SEED, rows, dev)
        params = algo.make_params({}, rows, dev)
        state = algo.init(streams, params)
        algo.step(state, streams, params, torch.zeros(rows, dtype=torch.int64, device=dev))

    return run


class ProbeResult(NamedTuple):
    """What :func:`probe_max_rows` measured. Bytes are over what was allocated before the probe."""

    rows: int  # the limit: largest row count whose projected peak fits the budget (>= MIN_STEP_ROWS)
    budget_bytes: int  # free memory at probe time × memory_fraction
    bytes_per_row: float  # slope of the projected peak
    fixed_bytes: float  # intercept of the projected peak (workspace that does not grow with rows)
    measured: tuple[tuple[int, int], ...]  # (rows, peak bytes) of every run that fitted, in order
    failed_rows: int | None  # the smallest row count that ran out of memory or over the budget, if any


def _fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    """(fixed, per_row) of the line through the two largest points; one point: all of it per row."""
    n2, p2 = points[-1]
    if len(points) >= 2:
        n1, p1 = points[-2]
        slope = (p2 - p1) / (n2 - n1)
        if slope > 0:
            return max(0.0, p2 - slope * n2), slope
    return 0.0, p2 / n2


def probe_max_rows(run: StepRun, memory: DeviceMemory, memory_fraction: float = DEFAULT_DEVICE_MEMORY_FRACTION,
                   max_rows: int = MAX_PROBE_ROWS, first_rows: int = FIRST_PROBE_ROWS,
                   bisections: int = PROBE_BISECTIONS) -> ProbeResult:
    """The largest row count in [MIN_STEP_ROWS, max_rows] that ``run`` can take within the memory budget.

    ``run(rows)`` executes one sampler step over ``rows`` rows on the device of ``memory``. Row counts double
    from ``first_rows`` while the projected peak of the next one fits the budget; the limit is then the
    projection (capped at ``max_rows``). If a run fails instead (out of memory, or a peak over the budget that the
    projection missed), ``bisections`` more runs narrow the gap between the last run that fitted and the one that
    failed, and the limit is the largest row count that was measured to fit. Out-of-memory errors
    (``memory.oom_error``) never propagate; any other error does.
    """
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    if max_rows < MIN_STEP_ROWS or first_rows < MIN_STEP_ROWS:
        raise ValueError(f"max_rows and first_rows must be >= {MIN_STEP_ROWS}, got {max_rows} and {first_rows}")
    budget = int(memory.free_bytes() * memory_fraction)
    base = memory.allocated_bytes()
    points: list[tuple[int, int]] = []

    def fits(rows: int) -> bool:
        memory.reset_peak()
        try:
            run(rows)
            peak = memory.peak_bytes() - base
        except memory.oom_error:
            memory.release_cache()
            return False
        if peak > budget:
            return False
        points.append((rows, peak))
        return True

    rows = min(first_rows, max_rows)
    failed: int | None = None
    while True:
        if not fits(rows):
            failed = rows
            break
        following = min(2 * rows, max_rows)
        fixed, per_row = _fit(points)
        if following == rows or fixed + per_row * following > budget:
            break
        rows = following
    if failed is None:
        fixed, per_row = _fit(points)
        projected = max_rows if per_row <= 0 else int((budget - fixed) // per_row)
        limit = min(max(points[-1][0], projected), max_rows)
        return ProbeResult(limit, budget, per_row, fixed, tuple(points), None)
    good = max((r for r, _ in points), default=0)
    bad = failed
    for _ in range(bisections):
        mid = (good + bad) // 2
        if mid <= good:
            break
        if fits(mid):
            good = mid
        else:
            bad = mid
    fixed, per_row = _fit(sorted(points)) if points else (0.0, math.inf)
    return ProbeResult(max(MIN_STEP_ROWS, good), budget, per_row, fixed, tuple(points), bad)


MemoryFor = Callable[[str], DeviceMemory | None]
RunFor = Callable[[SamplingAlgorithm, str], StepRun]
LabelKey = tuple[str, str, str]  # (model, sampler, device): the exported gauge's labels


def is_host_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is the host allocator refusing memory: ``MemoryError``, or torch's CPU allocator
    (``RuntimeError: [enforce fail at alloc_cpu.cpp] ... DefaultCPUAllocator: can't allocate memory``)."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


class StepBudget:
    """Per pool key, the most proposal rows one step may evaluate: found once, cached, halved after an OOM.

    ``max_step_rows`` (``GANSAMPLER_MAX_STEP_ROWS``) caps every device and replaces the CPU default (see the
    module docstring; ``block_proposals`` is the pools' proposal block, ``GANSAMPLER_BLOCK_PROPOSALS``);
    ``memory_fraction`` (``GANSAMPLER_DEVICE_MEMORY_FRACTION``) is the share of a probed device's free memory a
    step may use. ``memory_for`` and ``run_for`` are injectable for tests. Thread-safe: the worker sizes pools,
    the engine reads :meth:`limits` for the gauges.
    """

    def __init__(self, max_batch_chains: int, memory_fraction: float = DEFAULT_DEVICE_MEMORY_FRACTION,
                 max_step_rows: int | None = None, block_proposals: int = 1, memory_for: MemoryFor = default_memory,
                 run_for: RunFor = sampler_step_run) -> None:
        if max_batch_chains < MIN_STEP_ROWS:
            raise ValueError(f"max_batch_chains must be >= {MIN_STEP_ROWS}, got {max_batch_chains}")
        if max_step_rows is not None and max_step_rows < MIN_STEP_ROWS:
            raise ValueError(f"max_step_rows must be >= {MIN_STEP_ROWS} or None, got {max_step_rows}")
        if not 0 < memory_fraction <= 1:
            raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
        self.max_batch_chains = max_batch_chains
        self.memory_fraction = memory_fraction
        self.max_step_rows = max_step_rows
        self.block_proposals = block_proposals
        self._memory_for = memory_for
        self._run_for = run_for
        self._lock = threading.Lock()
        self._device_locks: dict[str, threading.RLock] = {}
        self._rows: dict[PoolKey, int] = {}
        self._labels: dict[LabelKey, int] = {}  # latest limit set per gauge label set
        self.probes: dict[PoolKey, ProbeResult] = {}  # what each probed key measured (logs, tests)

    @property
    def default_rows(self) -> int:
        """The limit where nothing is probed (CPU, MPS) or the probe failed for a reason other than memory."""
        if self.max_step_rows is not None:
            return self.max_step_rows
        return max(self.max_batch_chains, self.block_proposals)

    def rows(self, key: PoolKey, algo: SamplingAlgorithm) -> int:
        """The key's limit, probing the device on the first call for a key (call it off any lock: it may run
        several sampler steps)."""
        with self._lock:
            known = self._rows.get(key)
        if known is not None:
            return known
        limit = self._find(key, algo)
        with self._lock:
            limit = self._rows.setdefault(key, limit)
            self._labels[_labels(key)] = limit
        return limit

    def device_lock(self, device: str) -> threading.RLock:
        """Held by a device's worker while it steps its pools and by a probe while it measures: a probe run at a
        model's warm-up (another thread) then never shares the device's memory with a step in flight, which would
        inflate its peak or push the step out of memory."""
        with self._lock:
            return self._device_locks.setdefault(str(device), threading.RLock())

    def measures(self, device: str) -> bool:
        """Whether limits on ``device`` are probed (a GPU), so that :meth:`prepare` has something to do there."""
        return self._memory_for(device) is not None

    def prepare(self, pools: Sequence[tuple[PoolKey, SamplingAlgorithm]]) -> None:
        """Probe each pool key now, on devices that have a memory probe (a GPU), so that a request never waits for
        it: the hub calls this at a model's warm-up with the pools a request without options runs. Devices with
        nothing to measure (CPU) keep finding their limit at the first request, as building a sampler there may
        cost a pilot batch (DRS) for nothing."""
        for key, algo in pools:
            if self.measures(key.device):
                self.rows(key, algo)

    def shrink_after(self, key: PoolKey, exc: BaseException) -> int | None:
        """After ``exc`` failed a step of ``key``'s pool: if it was an out-of-memory error, halve the key's limit
        (floor MIN_STEP_ROWS), release the device's cache and return the new limit; otherwise None."""
        memory = self._memory_for(key.device)
        oom_types: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,)
        if memory is not None:
            oom_types += (memory.oom_error,)
        if not isinstance(exc, oom_types) and not is_host_oom(exc):
            return None
        if memory is not None:
            memory.release_cache()
        with self._lock:
            limit = max(MIN_STEP_ROWS, self._rows.get(key, self.default_rows) // 2)
            self._rows[key] = limit
            self._labels[_labels(key)] = limit
        return limit

    def limits(self) -> dict[LabelKey, int]:
        """Per (model, sampler, device): the limit most recently set for a pool of theirs (any options)."""
        with self._lock:
            return dict(self._labels)

    def _find(self, key: PoolKey, algo: SamplingAlgorithm) -> int:
        memory = self._memory_for(key.device)
        if memory is None:
            return self.default_rows
        cap = self.max_step_rows if self.max_step_rows is not None else MAX_PROBE_ROWS
        try:
            with self.device_lock(key.device):
                result = probe_max_rows(self._run_for(algo, key.device), memory, self.memory_fraction, cap)
        except Exception:  # a model that cannot step fails its requests in the pool, with the real error
            log.warning("step budget probe of %s failed; using %d rows", _describe(key), self.default_rows,
                        exc_info=True)
            return self.default_rows
        with self._lock:
            self.probes[key] = result
        log.info("step budget of %s: %d rows (budget %d bytes, %.0f bytes/row + %.0f fixed, measured %s%s)",
                 _describe(key), result.rows, result.budget_bytes, result.bytes_per_row, result.fixed_bytes,
                 [r for r, _ in result.measured],
                 "" if result.failed_rows is None else f", {result.failed_rows} rows did not fit")
        return result.rows


def _labels(key: PoolKey) -> LabelKey:
    return key.model, key.sampler, key.device


def _describe(key: PoolKey) -> str:
    options: Any = key.options
    return f"{key.model} {key.sampler} {options!r} on {key.device}"
