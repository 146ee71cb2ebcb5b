"""The engine facade: device workers, admission control, gauges, and awaiting a ticket from the event loop.

    engine = Engine(EngineConfig.from_settings(settings), sink)
    engine.start()
    ticket = engine.submit(work)              # raises Overloaded (429) before anything is queued
    result = await engine.wait(ticket, disconnected=client_gone(request.receive))
    engine.stop()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, NamedTuple

from service.config import DEFAULT_DEVICE_MEMORY_FRACTION, Settings
from service.engine.admission import AdmissionController
from service.engine.budget import StepBudget
from service.engine.errors import Cancelled, DeadlineExceeded, EngineStopped
from service.engine.stats import Gauges, NullSink, StatsSink
from service.engine.ticket import ChainResult, Priority, Ticket, Work
from service.engine.worker import DeviceWorker, EngineObserver, WorkerLimits
from service.samplers.block import BLOCK_PROPOSALS

DEADLINE_GRACE_S = 1.0  # the worker enforces deadlines; the waiter gives up this much later as a backstop


class EngineConfig(NamedTuple):
    devices: tuple[str, ...]
    max_batch_chains: int
    steps_per_iteration: int
    job_batch_fraction: float
    max_queue_chain_steps: int
    retry_after_s: int
    device_memory_fraction: float = DEFAULT_DEVICE_MEMORY_FRACTION
    max_step_rows: int | None = None
    block_proposals: int = BLOCK_PROPOSALS

    @staticmethod
    def from_settings(s: Settings) -> EngineConfig:
        return EngineConfig(s.devices, s.max_batch_chains, s.steps_per_iteration, s.job_batch_fraction,
                            s.max_queue_chain_steps, s.retry_after_s, s.device_memory_fraction, s.max_step_rows,
                            s.block_proposals)


class Engine:
    def __init__(self, config: EngineConfig, sink: StatsSink | None = None,
                 observer: EngineObserver | None = None, budget: StepBudget | None = None) -> None:
        self.config = config
        self.sink: StatsSink = sink if sink is not None else NullSink()
        self.observer = observer if observer is not None else EngineObserver()
        self.admission = AdmissionController(config.max_queue_chain_steps, config.retry_after_s)
        self.gauges = Gauges()
        # one budget for every device (its cache is per pool key, and keys name their device)
        self.budget = budget if budget is not None else StepBudget(
            config.max_batch_chains, config.device_memory_fraction, config.max_step_rows, config.block_proposals
        )
        limits = WorkerLimits(config.max_batch_chains, config.steps_per_iteration, config.job_batch_fraction,
                              config.block_proposals)
        self.workers = {
            d: DeviceWorker(d, limits, self.admission, self.sink, self.observer, self.publish_gauges, self.budget)
            for d in config.devices
        }
        self._started = False
        self.draining = False

    def start(self) -> None:
        if not self._started:
            for w in self.workers.values():
                w.start()
            self._started = True

    def stop(self, timeout: float | None = 10.0) -> None:
        if self._started:
            for w in self.workers.values():
                w.stop(timeout)
            self._started = False

    def least_loaded(self, devices: list[str]) -> str:
        """The device among ``devices`` with the fewest queued + running chains."""
        return min(devices, key=lambda d: self.workers[d].load())

    def drain(self) -> None:
        """Take no new work (:class:`EngineStopped`, a 503 with Retry-After) and let what was submitted finish:
        the first step of a graceful shutdown; :meth:`stop` then fails whatever is still running."""
        self.draining = True

    def in_flight(self) -> int:
        """Chains submitted and not finished, over every device (queued or stepping)."""
        return sum(w.waiting_chains + w.active_chains for w in self.workers.values())

    def submit(self, work: Work) -> Ticket:
        """Queue ``work`` on its device. Interactive work is admission-controlled (:class:`Overloaded`)."""
        if self.draining:
            raise EngineStopped()
        worker = self.workers[work.key.device]
        if work.priority == Priority.INTERACTIVE:
            self.admission.reserve(work.key, work.chain_steps)
        ticket = Ticket(work)
        try:
            worker.submit(ticket)
        except Exception:
            if work.priority == Priority.INTERACTIVE:
                self.admission.release(work.key, work.chain_steps)
            raise
        self.observer.on_submit(ticket)
        self.publish_gauges()
        return ticket

    def cancel(self, ticket: Ticket, reason: str = "cancelled") -> None:
        ticket.cancel(reason)
        self.workers[ticket.work.key.device].wake()

    async def wait(self, ticket: Ticket, disconnected: Awaitable[object] | None = None) -> ChainResult:
        """Await the ticket without blocking the loop.

        ``disconnected`` completes when the client goes away (no polling); then, or when the deadline passes (the
        worker enforces it; this is the backstop), or when the caller is cancelled, the ticket's chains are
        dropped at the next step.
        """
        fut = asyncio.wrap_future(ticket.future)
        fut.add_done_callback(retrieve_outcome)  # when the caller has left, nobody else reads the ticket's outcome
        watch = asyncio.ensure_future(disconnected) if disconnected is not None else None
        try:
            timeout = None
            if ticket.deadline is not None:
                timeout = max(0.0, ticket.deadline + DEADLINE_GRACE_S - time.monotonic())
            waiters: set[asyncio.Future[Any]] = {fut} if watch is None else {fut, watch}
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if fut in done:
                return fut.result()
            if watch is not None and watch in done:
                self.cancel(ticket, "client disconnected")
                raise Cancelled("client disconnected")
            self.cancel(ticket, "deadline")
            raise DeadlineExceeded(ticket.work.timeout_s or 0.0)
        except asyncio.CancelledError:  # the caller went away (e.g. the server task was cancelled)
            self.cancel(ticket, "caller cancelled")
            raise
        finally:
            if watch is not None:
                watch.cancel()

    def publish_gauges(self) -> None:
        g = self.gauges
        g.queue_depth = sum(w.waiting_chains for w in self.workers.values())
        g.active_chains = sum(w.active_chains for w in self.workers.values())
        g.queued_chain_steps = self.admission.queued
        g.pool_max_rows = self.budget.limits()
        self.sink.set_gauges(g)


def retrieve_outcome(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: a request that ended early (client gone, deadline, shutdown) leaves its
    ticket's outcome unread, and asyncio would log "Future exception was never retrieved" for each."""
    if not fut.cancelled():
        fut.exception()
