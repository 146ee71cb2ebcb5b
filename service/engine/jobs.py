"""Long runs as jobs: persisted (:class:`JobStore`), run through the same engine pools as requests at the lower
:attr:`Priority.JOB` class (job chains hold at most a share of a pool's rows, so short requests always find room),
with progress, cancellation and results that survive a restart.

The manager knows nothing of HTTP: the app hands it ``prepare(request) -> (work, context)`` (validation, raising
the API's errors) and ``render(context, result) -> (json_body, npz_bytes)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from service.engine.engine import Engine
from service.engine.errors import Cancelled
from service.engine.jobstore import TERMINAL, JobStore
from service.engine.ticket import ChainResult, Ticket, Work

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^job_[0-9a-f]{16}$")

Prepare = Callable[[dict[str, Any]], tuple[Work, Any]]
Render = Callable[[Any, ChainResult], tuple[dict[str, Any], bytes]]


class JobNotFound(KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.message = f"no job {job_id!r}"


class JobNotFinished(Exception):
    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} is {state}; its result exists once it has succeeded")
        self.message = str(self)


class JobManager:
    def __init__(self, store: JobStore, engine: Engine, prepare: Prepare, render: Render,
                 max_running: int, progress_interval_s: float) -> None:
        self.store = store
        self.engine = engine
        self.prepare = prepare
        self.render = render
        self.max_running = max_running
        self.interval = progress_interval_s
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._live: dict[str, Ticket] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, models_loaded: asyncio.Event | None = None) -> None:
        """Mark jobs that were running when the process died ``interrupted``; requeue the queued ones. Runners
        start taking jobs once ``models_loaded`` is set."""
        for job_id in await asyncio.to_thread(self.store.recover):
            self._queue.put_nowait(job_id)
        self._tasks = [
            asyncio.create_task(self._runner(models_loaded), name=f"job-runner-{i}") for i in range(self.max_running)
        ]
        await self._publish()

    async def stop(self) -> None:
        for job_id, ticket in list(self._live.items()):
            self.engine.cancel(ticket, "server stopping")
            await asyncio.to_thread(self.store.set_state_if, job_id, ("running",), "interrupted",
                                    "the server stopped while the job was running")
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await asyncio.to_thread(self.store.close)

    # --- API ------------------------------------------------------------------------------------------------

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        work, _ = self.prepare(request)  # raises the API's 4xx/503 before anything is stored
        job_id = f"job_{uuid.uuid4().hex[:16]}"
        request = {**request, "seed": work.seed}
        job = await asyncio.to_thread(self.store.create, job_id, request, work.chain_steps)
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

    async def result(self, job_id: str, npz: bool) -> bytes:
        job = await self.get(job_id)
        if job["state"] != "succeeded":
            raise JobNotFinished(job_id, job["state"])
        return await asyncio.to_thread(self.store.read_result, job_id, npz)

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

    async def events(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """The job now, then on every change (at most every progress interval), until a terminal state."""
        last: dict[str, Any] | None = None
        while True:
            job = await self.get(job_id)
            if job != last:
                yield job
                last = job
            if job["state"] in TERMINAL:
                return
            await asyncio.sleep(self.interval)  # a polling period, not synchronisation

    # --- runner ---------------------------------------------------------------------------------------------

    def _view(self, job: dict[str, Any]) -> dict[str, Any]:
        ticket = self._live.get(job["id"])
        if ticket is not None and job["state"] == "running":
            job["steps_done"] = max(job["steps_done"], ticket.steps_done)
        total = max(job["steps_total"], 1)
        job["progress"] = 1.0 if job["state"] == "succeeded" else min(1.0, job["steps_done"] / total)
        return job

    async def _runner(self, models_loaded: asyncio.Event | None) -> None:
        if models_loaded is not None:
            await models_loaded.wait()
        while True:
            job_id = await self._queue.get()
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
        if not await asyncio.to_thread(self.store.set_state_if, job_id, ("queued",), "running"):
            return  # cancelled meanwhile
        ticket = self.engine.submit(work)
        self._live[job_id] = ticket
        await self._publish()
        fut = asyncio.wrap_future(ticket.future)
        while True:
            done, _ = await asyncio.wait({fut}, timeout=self.interval)
            if done:
                break
            await asyncio.to_thread(self.store.update, job_id, steps_done=ticket.steps_done)
        try:
            result = fut.result()
        except Cancelled:
            return  # state already set by delete() or stop()
        body, npz = await asyncio.to_thread(self.render, context, result)
        await asyncio.to_thread(self.store.write_result, job_id, body, npz)
        await asyncio.to_thread(self.store.update, job_id, steps_done=ticket.steps_done)
        await asyncio.to_thread(self.store.set_state_if, job_id, ("running",), "succeeded")

    async def _publish(self) -> None:
        self.engine.gauges.jobs = await asyncio.to_thread(self.store.counts)
        self.engine.publish_gauges()
