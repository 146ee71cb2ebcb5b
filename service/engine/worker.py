"""One executor thread per device: the continuous-batching loop.

Each iteration, under the lock, the worker picks the next pool with work (round-robin across pools), plans which
waiting chains join it (interactive first, then job chains up to their share of ``max_batch_chains``) and collects
tickets that were cancelled or whose deadline passed. Then, without the lock, it drops the dead rows, initialises
the new ones, runs ``steps_per_iteration`` steps over every row, and retires finished rows; a ticket whose last
chain retired resolves its future (a ``concurrent.futures.Future``: awaiting it through ``asyncio.wrap_future``
hands the result to the event loop with ``call_soon_threadsafe``). An exception from the model fails the tickets
of that pool only. The event loop never runs torch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from service.engine.admission import AdmissionController
from service.engine.budget import StepBudget
from service.engine.errors import Cancelled, DeadlineExceeded, EngineError, EngineStopped, ModelFailed
from service.engine.pool import Admission, ChainPool
from service.engine.stats import StatsSink, StepStats
from service.engine.threads import settle_thread_count, torch_threads
from service.engine.ticket import PoolKey, Priority, Ticket
from service.samplers.block import BLOCK_PROPOSALS

log = logging.getLogger(__name__)


class StepEvent(NamedTuple):
    """What one pool step ran: ``rows`` chains of ``tickets`` (ids), for tests and benchmarks."""

    key: PoolKey
    rows: int
    tickets: tuple[int, ...]


class EngineObserver:
    """Hooks with no effect by default. ``on_submit`` runs in the submitting thread, ``on_step`` in the worker."""

    def on_submit(self, ticket: Ticket) -> None:
        pass

    def on_step(self, event: StepEvent) -> None:
        pass


class WorkerLimits(NamedTuple):
    max_batch_chains: int
    steps_per_iteration: int
    job_batch_fraction: float
    block_proposals: int = BLOCK_PROPOSALS  # most chain-steps of one pool step (service.samplers.block)


class DeviceWorker:
    def __init__(
        self,
        device: str,
        limits: WorkerLimits,
        admission: AdmissionController,
        sink: StatsSink,
        observer: EngineObserver,
        on_iteration: Callable[[], None],
        budget: StepBudget | None = None,
    ) -> None:
        self.device = device
        self.budget = budget if budget is not None else StepBudget(
            limits.max_batch_chains, block_proposals=limits.block_proposals
        )
        self.limits = limits
        self.admission = admission
        self.sink = sink
        self.observer = observer
        self._on_iteration = on_iteration
        self._cv = threading.Condition()
        self._pools: dict[PoolKey, ChainPool] = {}
        self._waiting: dict[PoolKey, dict[Priority, deque[Ticket]]] = {}
        self._order: deque[PoolKey] = deque()  # round-robin order of keys with work
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"gansampler-worker-{device}", daemon=True)
        self.active_chains = 0
        self.waiting_chains = 0

    # --- any thread ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout)

    def submit(self, ticket: Ticket) -> None:
        key = ticket.work.key
        with self._cv:
            if self._stopping:
                raise EngineStopped()
            if key not in self._waiting:
                self._waiting[key] = {p: deque() for p in Priority}
            if key not in self._order:
                self._order.append(key)
            self._waiting[key][ticket.work.priority].append(ticket)
            self.waiting_chains += ticket.work.n
            self._cv.notify_all()

    def wake(self) -> None:
        """Make the worker look at cancellations and deadlines now."""
        with self._cv:
            self._cv.notify_all()

    def load(self) -> int:
        """Chains queued or running here (for placing a request on the least loaded device)."""
        return self.active_chains + self.waiting_chains

    # --- worker thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        settle_thread_count()  # this thread's count before any pool switches it ([runtime] threads)
        while True:
            with self._cv:
                while not self._stopping and not self._order:
                    self._cv.wait()
                if self._stopping:
                    break
                key = self._order[0]
                self._order.rotate(-1)
                pool = self._pools.get(key)
                first = None if pool is not None else next(t for q in self._waiting[key].values() for t in q)
            if first is not None:  # a new pool: size its steps once per key, unlocked (it may probe the device)
                pool = ChainPool(key, first.work.algo, self.limits.block_proposals)
                pool.threads = first.work.threads  # one model per key, so one setting per pool
                pool.max_step_rows = self.budget.rows(key, first.work.algo)
            assert pool is not None
            with self._cv:
                self._pools[key] = pool
                plan, dead = self._plan(key, pool, time.monotonic())
            # a warm-up probe on this device waits for the step; the model's [runtime] threads apply to it
            with self.budget.device_lock(self.device), torch_threads(pool.threads):
                self._iterate(pool, plan, dead)
            with self._cv:
                self._forget_if_idle(key)
        self._shutdown()

    def _plan(self, key: PoolKey, pool: ChainPool, now: float) -> tuple[list[Admission], list[Ticket]]:
        """Under the lock: waiting chains to admit into ``pool``, and dead waiting tickets (removed)."""
        queues = self._waiting.get(key, {})
        dead: list[Ticket] = []
        for q in queues.values():
            gone = [t for t in q if t.cancel_reason is not None or t.expired(now)]
            for t in gone:
                q.remove(t)
                self.waiting_chains -= t.work.n - t.admitted
            dead += gone
        cap = min(self.limits.max_batch_chains, pool.max_step_rows)  # rows that fit one step on the device
        free = cap - pool.rows
        job_room = max(1, int(cap * self.limits.job_batch_fraction)) - pool.rows_of(Priority.JOB)
        plan: list[Admission] = []
        for prio in Priority:
            q = queues.get(prio, deque())
            while q and free > 0:
                t = q[0]
                room = free if prio == Priority.INTERACTIVE else min(free, job_room)
                if room <= 0:
                    break
                count = min(room, t.work.n - t.admitted)
                plan.append(Admission(t, t.admitted, count))
                t.admitted += count
                self.waiting_chains -= count
                self.active_chains += count  # exact again at the end of the iteration
                free -= count
                if prio == Priority.JOB:
                    job_room -= count
                if t.admitted >= t.work.n:
                    q.popleft()
        return plan, dead

    def _forget_if_idle(self, key: PoolKey) -> None:
        """Under the lock: drop a key from the round-robin when it has no rows and nothing waiting."""
        pool = self._pools.get(key)
        if (pool is None or pool.rows == 0) and not any(self._waiting.get(key, {}).values()):
            self._pools.pop(key, None)
            self._waiting.pop(key, None)
            if key in self._order:
                self._order.remove(key)

    def _iterate(self, pool: ChainPool, plan: list[Admission], dead: list[Ticket]) -> None:
        now = time.monotonic()
        in_pool = [t for t in pool.tickets.values() if t.cancel_reason is not None or t.expired(now)]
        if in_pool:
            pool.drop(in_pool)
            with self._cv:
                for t in in_pool:
                    self._unqueue(t)
        for t in dead + in_pool:
            self._fail(t, _dead_error(t))
        try:
            if plan:
                pool.admit(plan)
                for a in plan:
                    if a.ticket.first_run is None:
                        a.ticket.first_run = now
            self._retire(pool)
            for _ in range(self.limits.steps_per_iteration):
                if pool.rows == 0:
                    break
                self._step(pool)
                self._retire(pool)
        except Exception as exc:  # a failing model fails its pool's requests only
            log.exception("pool %s failed", pool.key)
            failed = {t.id: t for t in pool.clear()}
            failed.update({a.ticket.id: a.ticket for a in plan})
            err = ModelFailed(pool.key.model, pool.key.sampler, exc)
            smaller = self.budget.shrink_after(pool.key, exc)  # out of device memory: smaller steps from now on
            if smaller is not None:
                pool.max_step_rows = smaller
                log.warning("pool %s ran out of device memory; at most %d rows per step from now on",
                            pool.key, smaller)
            with self._cv:
                for t in failed.values():
                    self._unqueue(t)
            for t in failed.values():
                self._fail(t, err)
        self.active_chains = sum(p.rows for p in self._pools.values())
        self._on_iteration()

    def _step(self, pool: ChainPool) -> None:
        t0 = time.perf_counter()
        counts = pool.step()
        seconds = time.perf_counter() - t0
        key = pool.key
        self.sink.record_step(
            StepStats(key.model, key.sampler, key.device, counts.rows, counts.proposals, counts.accepted,
                      counts.nonfinite, seconds, counts.chain_steps)
        )
        self.admission.observe(key, counts.chain_steps, seconds)
        give = 0
        for t in pool.tickets.values():
            if t.work.priority == Priority.INTERACTIVE:
                g = min(t.steps_done, t.total_chain_steps) - t.released
                t.released += g
                give += g
        self.admission.release(key, give)
        self.observer.on_step(StepEvent(key, counts.rows, tuple(pool.tickets)))

    def _retire(self, pool: ChainPool) -> None:
        completed, finished = pool.retire()
        if finished is not None:
            self.sink.record_chains(finished)
        now = time.monotonic()
        for t in completed:
            self._release_rest(t)
            if not t.future.done():
                t.future.set_result(t.assemble(now))

    def _unqueue(self, t: Ticket) -> None:
        """Under the lock: remove a ticket's not-yet-admitted chains from the waiting queue."""
        q = self._waiting.get(t.work.key, {}).get(t.work.priority)
        if q is not None and t in q:
            q.remove(t)
            self.waiting_chains -= t.work.n - t.admitted

    def _release_rest(self, t: Ticket) -> None:
        if t.work.priority == Priority.INTERACTIVE:
            self.admission.release(t.work.key, t.total_chain_steps - t.released)
            t.released = t.total_chain_steps

    def _fail(self, t: Ticket, err: EngineError) -> None:
        self._release_rest(t)
        if not t.future.done():
            t.future.set_exception(err)

    def _shutdown(self) -> None:
        tickets: dict[int, Ticket] = {}
        for pool in self._pools.values():
            tickets.update({t.id: t for t in pool.clear()})
        for queues in self._waiting.values():
            for q in queues.values():
                tickets.update({t.id: t for t in q})
        for t in tickets.values():
            self._fail(t, EngineStopped())


def _dead_error(t: Ticket) -> EngineError:
    if t.cancel_reason is not None:
        return Cancelled(t.cancel_reason)
    return DeadlineExceeded(t.work.timeout_s or 0.0)
