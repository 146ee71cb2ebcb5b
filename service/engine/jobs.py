"""Long runs as jobs: persisted (:class:`JobStore`), run through the same engine pools as requests at the lower
:attr:`Priority.JOB` class (job chains hold at most a share of a pool's rows, so short requests always find room),
with progress, cancellation and results that survive a restart.

The manager knows nothing of HTTP: the app hands it ``prepare(request) -> (work, context)`` (validation, raising
the API's errors) and ``render(context, result) -> (json_body, npz_bytes)``.

Finished jobs are kept ``retention_s`` after they ended, then a sweep (at start, and every
:func:`sweep_interval` while serving) deletes their rows and result files; queued and running jobs are never swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from service.config import DEFAULT_JOB_MAX_ATTEMPTS, DEFAULT_JOB_RETENTION_S, DEFAULT_RETRY_AFTER_S
from service.engine.engine import Engine, retrieve_outcome
from service.engine.errors import Cancelled, DeadlineExceeded, EngineStopped, Overloaded
from service.engine.jobstore import TERMINAL, JobStore, iso
from service.engine.ticket import ChainResult, Ticket, Work

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^job_[0-9a-f]{16}$")
MAX_ID_SHOWN = 40  # characters of an unknown job id quoted in a 404
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
MAX_SWEEP_INTERVAL_S = 600.0  # a finished job outlives its retention by at most about this long
MIN_SWEEP_INTERVAL_S = 1.0

Prepare = Callable[[dict[str, Any]], tuple[Work, Any]]
Render = Callable[[Any, ChainResult], tuple[dict[str, Any], bytes]]


class JobNotFound(KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        if len(job_id) > MAX_ID_SHOWN:  # an id is echoed into the body and the logs: never at any length
            self.message = f"no job {job_id[:MAX_ID_SHOWN]!r}... ({len(job_id)} characters; job ids have 20)"
        elif not JOB_ID.match(job_id):
            self.message = f"no job {job_id!r} (job ids are 'job_' and 16 hex digits)"
        else:
            self.message = f"no job {job_id!r}"


class JobResultMissing(JobNotFound):
    """A succeeded job whose result file is gone (removed from the data dir by hand, or a disk problem)."""

    def __init__(self, job_id: str, name: str) -> None:
        super().__init__(job_id)
        self.message = (f"job {job_id} succeeded but its result file {name} is missing from the server's data dir; "
                        f"delete the job (DELETE /v1/jobs/{job_id}) and run it again")


class JobNotFinished(Exception):
    def __init__(self, job_id: str, state: str, error: str | None = None) -> None:
        if state in TERMINAL:
            why = f" ({error})" if error else ""
            text = (f"job {job_id} is {state}{why}: it has no result and never will; only a succeeded job has one "
                    "(create a new job to run it again)")
        else:
            text = f"job {job_id} is {state}; its result exists once it has succeeded"
        super().__init__(text)
        self.message = text
        self.state = state


class TooManyQueuedJobs(Overloaded):
    """429: ``max_queued_jobs`` jobs are waiting to start already, or their work plus this job's would pass
    ``max_queued_job_chain_steps``. Not an engine error, but rendered as one (429 ``overloaded``, Retry-After)."""

    def __init__(self, message: str, queued: int, cost: int, limit: int, retry_after: int) -> None:
        Exception.__init__(self, f"{message}; retry after {retry_after} s, once some have started (or cancel "
                                 "queued ones)")
        self.queued = queued
        self.cost = cost
        self.limit = limit
        self.retry_after = retry_after


def sweep_interval(retention_s: float) -> float:
    """Seconds between retention sweeps: a quarter of the retention, within [MIN, MAX]_SWEEP_INTERVAL_S."""
    return min(MAX_SWEEP_INTERVAL_S, max(MIN_SWEEP_INTERVAL_S, retention_s / 4))


class JobManager:
    def __init__(self, store: JobStore, engine: Engine, prepare: Prepare, render: Render,
                 max_running: int, progress_interval_s: float, *,
                 retention_s: float = DEFAULT_JOB_RETENTION_S, max_attempts: int = DEFAULT_JOB_MAX_ATTEMPTS) -> None:
        """``retention_s``: how long finished jobs are kept (0: forever); ``max_attempts``: how many times a job is
        started before a process that died while running it gives it up (``interrupted``)."""
        self.store = store
        self.engine = engine
        self.prepare = prepare
        self.render = render
        self.max_running = max_running
        self.interval = progress_interval_s
        self.retention_s = retention_s
        self.max_attempts = max_attempts
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._live: dict[str, Ticket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()  # set by drain(): event streams send the job's state once more and end
        self._changed = asyncio.Event()  # set, and replaced, whenever a job changes: event streams wake on it
        self._draining = False

    async def start(self, models_loaded: asyncio.Event | None = None) -> None:
        """Queue the jobs left queued, and those that were running when the process died (from their start: the
        stored request and seed reproduce them) unless they have been started ``max_attempts`` times, which end
        ``interrupted``. Runners start taking jobs once ``models_loaded`` is set."""
        queued, lost = await asyncio.to_thread(self.store.recover, self.max_attempts)
        for job_id in lost:
            log.warning("job %s was running when the server stopped, for the %d time: not started again "
                        "(job_max_attempts)", job_id, self.max_attempts)
        for job_id in queued:
            self._queue.put_nowait(job_id)
        await self.sweep()
        self._tasks = [
            asyncio.create_task(self._runner(models_loaded), name=f"job-runner-{i}") for i in range(self.max_running)
        ]
        self._tasks.append(asyncio.create_task(self._sweeper(), name="job-sweeper"))
        await self._publish()

    async def drain(self) -> None:
        """The start of a shutdown: start no more jobs, stop the running ones and queue them again (the next start
        runs them from their start: their request and seed reproduce the same result; the attempt is not counted),
        keep the queued ones, and end every event stream with the job's state at that point. Idempotent."""
        self._draining = True  # a runner whose job ends now takes no other
        for job_id, ticket in list(self._live.items()):
            self.engine.cancel(ticket, "server stopping")
            if await asyncio.to_thread(self.store.requeue, job_id):
                log.info("job %s queued again: the server is stopping (the next start runs it)", job_id)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        self._closing.set()
        self._notify()

    async def stop(self) -> None:
        await self.drain()
        await asyncio.to_thread(self.store.close)

    # --- API ------------------------------------------------------------------------------------------------

    async def create(self, request: dict[str, Any], max_queued: int | None = None,
                     max_queued_steps: int | None = None,
                     retry_after_s: int = DEFAULT_RETRY_AFTER_S) -> dict[str, Any]:
        """Store and queue a job. TooManyQueuedJobs (429, ``Retry-After: retry_after_s``) when ``max_queued`` jobs
        are queued already, or when their chain-steps plus this job's would pass ``max_queued_steps`` (None: no
        limit; a job is always taken when none is queued)."""
        if self._draining:
            raise EngineStopped()
        work, _ = self.prepare(request)  # raises the API's 4xx/503 before anything is stored
        job_id = f"job_{uuid.uuid4().hex[:16]}"
        request = {**request, "seed": work.seed}
        cost = work.chain_steps
        job = await asyncio.to_thread(self.store.create_if_below, job_id, request, cost, max_queued,
                                      max_queued_steps)
        if isinstance(job, tuple):
            count, steps = job
            if max_queued is not None and count >= max_queued:
                raise TooManyQueuedJobs(f"too many queued jobs: {count} jobs are waiting to start, the limit is "
                                        f"max_queued_jobs={max_queued}", count, 1, max_queued, retry_after_s)
            assert max_queued_steps is not None
            raise TooManyQueuedJobs(f"too much queued job work: {count} queued jobs hold {steps} chain-steps, + "
                                    f"{cost} requested exceeds max_queued_job_chain_steps={max_queued_steps}",
                                    steps, cost, max_queued_steps, retry_after_s)
        self._queue.put_nowait(job_id)
        await self._publish()
        return self._view(job)

    async def get(self, job_id: str) -> dict[str, Any]:
        if not JOB_ID.match(job_id):
            raise JobNotFound(job_id)
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return self._view(job)

    async def list_page(self, states: frozenset[str] | None, limit: int,
                   cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs newest first and the next page's cursor (see :meth:`JobStore.list_page`; BadCursor for a bad one)."""
        jobs, nxt = await asyncio.to_thread(self.store.list_page, states, limit, cursor)
        return [self._view(j) for j in jobs], nxt

    async def result(self, job_id: str, npz: bool) -> bytes:
        job = await self.get(job_id)
        if job["state"] != "succeeded":
            raise JobNotFinished(job_id, job["state"], job["error"])
        try:
            return await asyncio.to_thread(self.store.read_result, job_id, npz)
        except FileNotFoundError as exc:
            raise JobResultMissing(job_id, exc.filename.rsplit("/", 1)[-1] if exc.filename else "result") from exc

    async def delete(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; delete a finished one (row and files). Returns the job."""
        job = await self.get(job_id)
        if job["state"] in TERMINAL:
            await asyncio.to_thread(self.store.delete, job_id)
            await self._publish()
            return job
        if await asyncio.to_thread(self.store.set_state_if, job_id, ("queued", "running"), "cancelled"):
            ticket = self._live.get(job_id)
            if ticket is not None:
                self.engine.cancel(ticket, "job cancelled")
        await self._publish()
        return await self.get(job_id)

    async def events(self, job_id: str, heartbeat_s: float | None = None) -> AsyncIterator[dict[str, Any] | None]:
        """The job now, then on every change (a state change at once, progress every progress interval), until a
        terminal state. With ``heartbeat_s``, None whenever that long passed without anything yielded (a
        keep-alive). Ends quietly when the job is deleted meanwhile, and after one last look when the server shuts
        down (:meth:`drain`). A stream reads the store when a job changed (:meth:`_notify`), not on a timer, so
        idle subscribers cost nothing."""
        clock = asyncio.get_running_loop().time
        last: dict[str, Any] | None = None
        sent = clock()
        closing = self._closing.is_set()
        while True:
            changed = self._changed  # taken before the read: a change during it wakes the wait below at once
            try:
                job = await self.get(job_id)
            except JobNotFound:
                if last is None:
                    raise
                return
            if job != last:
                yield job
                last, sent = job, clock()
            elif heartbeat_s is not None and clock() - sent >= heartbeat_s:
                yield None
                sent = clock()
            if job["state"] in TERMINAL or closing:
                return
            pause = None if heartbeat_s is None else max(sent + heartbeat_s - clock(), 0.0)
            with contextlib.suppress(TimeoutError):  # the heartbeat is due
                await asyncio.wait_for(changed.wait(), pause)
            closing = self._closing.is_set()

    async def sweep(self, now: datetime | None = None) -> list[str]:
        """Delete the finished jobs that ended more than ``retention_s`` before ``now`` (rows, then files), and
        result folders left without a row. Returns the ids of the jobs deleted."""
        deleted: list[str] = []
        if self.retention_s > 0:
            cutoff = iso((now or datetime.now(UTC)) - timedelta(seconds=self.retention_s))
            deleted = await asyncio.to_thread(self.store.delete_finished_before, cutoff)
        orphans = await asyncio.to_thread(self.store.remove_orphans)
        if deleted or orphans:
            log.info("job retention: deleted %d finished jobs (kept %g s) and %d orphaned result folders",
                     len(deleted), self.retention_s, len(orphans))
            await self._publish()
        return deleted

    # --- runner ---------------------------------------------------------------------------------------------

    def _view(self, job: dict[str, Any]) -> dict[str, Any]:
        ticket = self._live.get(job["id"])
        if ticket is not None and job["state"] == "running":
            job["steps_done"] = max(job["steps_done"], ticket.steps_done)
        total = max(job["steps_total"], 1)
        job["progress"] = 1.0 if job["state"] == "succeeded" else min(1.0, job["steps_done"] / total)
        return job

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(sweep_interval(self.retention_s))  # a period, not synchronisation
            try:
                await self.sweep()
            except Exception:  # a full disk or a locked file must not end the sweeps
                log.exception("job retention sweep failed")

    async def _runner(self, models_loaded: asyncio.Event | None) -> None:
        if models_loaded is not None:
            await models_loaded.wait()
        while not self._draining:
            job_id = await self._queue.get()
            if self._draining:
                return  # still queued in the store: the next start runs it
            try:
                await self._run(job_id)
            except Exception as exc:  # never let one job stop the runner
                log.exception("job %s failed", job_id)
                await asyncio.to_thread(self.store.set_state_if, job_id, ("queued", "running"), "failed",
                                        f"{type(exc).__name__}: {exc}")
            finally:
                self._live.pop(job_id, None)
                await self._publish()

    async def _run(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or job["state"] != "queued":
            return
        try:
            work, context = self.prepare(job["request"])
        except Exception as exc:  # the model went away since the job was accepted
            await asyncio.to_thread(self.store.set_state_if, job_id, ("queued",), "failed", getattr(
                exc, "message", str(exc)))
            return
        if not await asyncio.to_thread(self.store.start, job_id):
            return  # cancelled meanwhile
        if self._draining:  # the server began to shut down meanwhile: leave it for the next start
            await asyncio.to_thread(self.store.requeue, job_id)
            return
        ticket = self.engine.submit(work)
        self._live[job_id] = ticket
        await self._publish()
        fut = asyncio.wrap_future(ticket.future)
        fut.add_done_callback(retrieve_outcome)  # a runner cancelled at shutdown leaves it unread
        while True:
            done, _ = await asyncio.wait({fut}, timeout=self.interval)
            if done:
                break
            await asyncio.to_thread(self.store.update, job_id, steps_done=ticket.steps_done)
            self._notify()
        try:
            result = fut.result()
        except Cancelled:
            return  # state already set by delete() or drain()
        except DeadlineExceeded as exc:  # the job's own timeout_s: an outcome the client asked for, not a fault
            log.warning("job %s stopped: %s", job_id, exc)
            await asyncio.to_thread(self.store.update, job_id, steps_done=ticket.steps_done)
            await asyncio.to_thread(self.store.set_state_if, job_id, ("running",), "failed", str(exc))
            return
        body, npz = await asyncio.to_thread(self.render, context, result)
        await asyncio.to_thread(self.store.write_result, job_id, body, npz)
        # a succeeded job ran its whole budget: steps_done = steps_total, as progress = 1 says (raw runs no chain
        # steps, and chains that stop early, e.g. DRS's accepted rows, leave some of the budget unused)
        await asyncio.to_thread(self.store.update, job_id, steps_done=job["steps_total"])
        await asyncio.to_thread(self.store.set_state_if, job_id, ("running",), "succeeded")

    async def _publish(self) -> None:
        """After a job changed: the per-state gauges, and every event stream wakes."""
        self.engine.gauges.jobs = await asyncio.to_thread(self.store.counts)
        self.engine.publish_gauges()
        self._notify()

    def _notify(self) -> None:
        """Wake every event stream waiting on the current ``_changed``; later waits take a fresh one."""
        self._changed.set()
        self._changed = asyncio.Event()
