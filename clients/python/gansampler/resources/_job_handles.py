"""Handles on server-side jobs (:class:`Job`, :class:`AsyncJob`) and the pieces of the SSE events stream they share
with :mod:`gansampler.resources.jobs`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import httpx

from .._base_client import make_transport_error
from .._constants import DEFAULT_POLL_INTERVAL_S, DEFAULT_WAIT_OUTAGE_S
from .._exceptions import APIConnectionError, JobFailedError, JobWaitTimeoutError, ServiceUnavailableError
from .._models import JobStatus, SampleBatch
from .._progress import ProgressBar
from .._sse import ServerSentEvent

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["AsyncJob", "Job", "job_from_event"]


def job_from_event(event: ServerSentEvent) -> JobStatus | None:
    """The JobStatus carried by an SSE event (``event: progress``, data = Job JSON), or None for other events."""
    if not event.data:
        return None
    try:
        data = json.loads(event.data)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and "id" in data and "state" in data:
        return JobStatus.model_validate(data)
    return None


class _Reconnect:
    """What an events stream remembers across reopenings: the last status yielded, and failed reopenings in a row."""

    def __init__(self) -> None:
        self.last: JobStatus | None = None
        self.failures = 0
        self._fresh = True

    def opened(self) -> None:
        self._fresh = True

    def new_status(self, status: JobStatus | None) -> JobStatus | None:
        """The status to yield, or None: not a status, or a reopened stream's first status repeating the last."""
        if status is None:
            return None
        repeat = self._fresh and status == self.last
        self._fresh = False
        if repeat:
            return None
        self.last = status
        self.failures = 0
        return status

    def next_try(self, max_retries: int, broken: httpx.TransportError | None, request: httpx.Request) -> int | None:
        """After a stream ended without a terminal state: the 0-based retry to wait for before reopening it, or
        None to end the iteration. Out of retries, a ``broken`` stream raises APIConnectionError."""
        if self.failures >= max_retries:
            if broken is not None:
                raise make_transport_error(broken, request) from broken
            return None
        self.failures += 1
        return self.failures - 1


#: Errors of one status poll that a restarting server gives: unreachable, or 503 while it stops or loads its models.
OUTAGE_ERRORS = (APIConnectionError, ServiceUnavailableError)


class _Outage:
    """Status polls that failed in a row with :data:`OUTAGE_ERRORS`, tolerated for ``limit`` seconds (None: not at
    all): a server restarting keeps its jobs and runs them again, so a wait outlives the restart."""

    def __init__(self, clock: Callable[[], float], limit: float | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"outage_timeout must be >= 0 or None, got {limit}")
        self._clock = clock
        self._limit = limit
        self._since: float | None = None

    def failed(self, exc: Exception) -> None:
        """Record a failed poll; raises ``exc`` once the polls have failed for longer than the limit."""
        now = self._clock()
        if self._since is None:
            self._since = now
        if self._limit is None or now - self._since > self._limit:
            raise exc

    def passed(self) -> None:
        self._since = None


class _Handle:
    """What the sync and async handles share: the last JobStatus seen and its fields."""

    status: JobStatus

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(id={self.id!r}, state={self.status.state!r}, progress={self.status.progress:.2f})"

    @property
    def id(self) -> str:
        return self.status.id

    @property
    def state(self) -> str:
        return str(self.status.state)

    @property
    def progress(self) -> float:
        return self.status.progress

    @property
    def done(self) -> bool:
        return self.status.done


class Job(_Handle):
    """Handle on a server-side job. ``status`` is the last JobStatus seen; ``refresh()`` fetches a new one."""

    def __init__(self, client: Client, status: JobStatus) -> None:
        self._client = client
        self.status = status

    def refresh(self) -> JobStatus:
        """Fetch the job's current status (``GET /v1/jobs/{id}``)."""
        self.status = self._client.jobs.status(self.id)
        return self.status

    def wait(
        self,
        *,
        progress: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        timeout: float | None = None,
        outage_timeout: float | None = DEFAULT_WAIT_OUTAGE_S,
    ) -> JobStatus:
        """Poll every ``poll_interval`` s until the job is terminal; returns its final status (never raises on
        ``failed``: check ``.state`` or call :meth:`result`). ``progress=True`` draws a bar on stderr.
        ``timeout`` (s) → JobWaitTimeoutError, the job keeps running. A server that cannot be reached or answers 503
        (a restart: the server keeps the job and runs it again) is polled on for ``outage_timeout`` s in a row
        before its error is raised (None: raised at once).
        """
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        clock, sleep = self._client._clock, self._client._sleep
        deadline = None if timeout is None else clock() + timeout
        outage = _Outage(clock, outage_timeout)
        bar = ProgressBar(clock=clock) if progress else None
        try:
            while True:
                try:
                    status = self.refresh()
                except OUTAGE_ERRORS as exc:
                    outage.failed(exc)
                    status = self.status
                else:
                    outage.passed()
                if bar is not None:
                    bar.update(status)
                if status.done:
                    return status
                if deadline is not None:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        raise JobWaitTimeoutError(status, timeout or 0.0)
                    sleep(min(poll_interval, remaining))
                else:
                    sleep(poll_interval)
        finally:
            if bar is not None:
                bar.close()

    def result(self, *, progress: bool = False, poll_interval: float = DEFAULT_POLL_INTERVAL_S) -> SampleBatch:
        """Wait for the job (see :meth:`wait`) and return its SampleBatch; JobFailedError unless it succeeded."""
        status = self.status if self.done else self.wait(progress=progress, poll_interval=poll_interval)
        if status.state != "succeeded":
            raise JobFailedError(status)
        return self._client.jobs.result(self.id)

    def cancel(self) -> JobStatus:
        """Cancel the job (running) or delete it (finished)."""
        self.status = self._client.jobs.cancel(self.id).status
        return self.status

    def events(self) -> Iterator[JobStatus]:
        """Statuses pushed by the server (SSE) until the job is terminal; updates :attr:`status`."""
        for status in self._client.jobs.events(self.id):
            self.status = status
            yield status


class AsyncJob(_Handle):
    """Async twin of :class:`Job`."""

    def __init__(self, client: AsyncClient, status: JobStatus) -> None:
        self._client = client
        self.status = status



    async def refresh(self) -> JobStatus:
        self.status = await self._client.jobs.status(self.id)
        return self.status

    async def wait(
        self,
        *,
        progress: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        timeout: float | None = None,
        outage_timeout: float | None = DEFAULT_WAIT_OUTAGE_S,
    ) -> JobStatus:
        """Async twin of :meth:`Job.wait`."""
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        clock, sleep = self._client._clock, self._client._sleep
        deadline = None if timeout is None else clock() + timeout
        outage = _Outage(clock, outage_timeout)
        bar = ProgressBar(clock=clock) if progress else None
        try:
            while True:
                try:
                    status = await self.refresh()
                except OUTAGE_ERRORS as exc:
                    outage.failed(exc)
                    status = self.status
                else:
                    outage.passed()
                if bar is not None:
                    bar.update(status)
                if status.done:
                    return status
                if deadline is not None:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        raise JobWaitTimeoutError(status, timeout or 0.0)
                    await sleep(min(poll_interval, remaining))
                else:
                    await sleep(poll_interval)
        finally:
            if bar is not None:
                bar.close()

    async def result(self, *, progress: bool = False, poll_interval: float = DEFAULT_POLL_INTERVAL_S) -> SampleBatch:
        """Async twin of :meth:`Job.result`."""
        status = self.status if self.done else await self.wait(progress=progress, poll_interval=poll_interval)
        if status.state != "succeeded":
            raise JobFailedError(status)
        return await self._client.jobs.result(self.id)

    async def cancel(self) -> JobStatus:
        self.status = (await self._client.jobs.cancel(self.id)).status
        return self.status

    async def events(self) -> AsyncIterator[JobStatus]:
        async for status in self._client.jobs.events(self.id):
            self.status = status
            yield status
