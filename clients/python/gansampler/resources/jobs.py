"""``client.jobs``: long sampling runs (``/v1/jobs``) and the :class:`Job` / :class:`AsyncJob` handles.

>>> job = client.jobs.create("digits-dcgan", sampler="rep", n=1024, steps=5000, seed=7)
>>> job.wait(progress=True)        # progress bar on stderr; returns the final JobStatus
>>> batch = job.result()           # SampleBatch; JobFailedError if the job failed / was cancelled
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .. import _requests
from .._base_client import TimeoutArg, make_transport_error, parse_model
from .._constants import DEFAULT_POLL_INTERVAL_S
from .._decode import NpzBatch, parse_npz
from .._exceptions import JobFailedError, JobWaitTimeoutError
from .._models import JobStatus, SampleBatch
from .._progress import ProgressBar
from .._requests import DiagnosticsLevel, OutputFormat
from .._sse import ServerSentEvent, aiter_events, iter_events
from .._types import NOT_GIVEN, NotGivenOr
from ._resource import AsyncResource, SyncResource

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["AsyncJob", "AsyncJobs", "Job", "Jobs", "job_from_event"]


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


class Job:
    """Handle on a server-side job. ``status`` is the last JobStatus seen; ``refresh()`` fetches a new one."""

    def __init__(self, client: Client, status: JobStatus) -> None:
        self._client = client
        self.status = status

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, state={self.status.state!r}, progress={self.status.progress:.2f})"

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
    ) -> JobStatus:
        """Poll every ``poll_interval`` s until the job is terminal; returns its final status (never raises on
        ``failed``: check ``.state`` or call :meth:`result`). ``progress=True`` draws a bar on stderr.
        ``timeout`` (s) → JobWaitTimeoutError, the job keeps running.
        """
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        clock, sleep = self._client._clock, self._client._sleep
        deadline = None if timeout is None else clock() + timeout
        bar = ProgressBar(clock=clock) if progress else None
        try:
            while True:
                status = self.refresh()
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


class AsyncJob:
    """Async twin of :class:`Job`."""

    def __init__(self, client: AsyncClient, status: JobStatus) -> None:
        self._client = client
        self.status = status

    def __repr__(self) -> str:
        return f"AsyncJob(id={self.id!r}, state={self.status.state!r}, progress={self.status.progress:.2f})"

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

    async def refresh(self) -> JobStatus:
        self.status = await self._client.jobs.status(self.id)
        return self.status

    async def wait(
        self,
        *,
        progress: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        timeout: float | None = None,
    ) -> JobStatus:
        """Async twin of :meth:`Job.wait`."""
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        clock, sleep = self._client._clock, self._client._sleep
        deadline = None if timeout is None else clock() + timeout
        bar = ProgressBar(clock=clock) if progress else None
        try:
            while True:
                status = await self.refresh()
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


class Jobs(SyncResource):
    def create(
        self,
        model: str,
        *,
        sampler: str,
        n: int,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        steps: NotGivenOr[int | None] = NOT_GIVEN,
        params: NotGivenOr[Mapping[str, float] | None] = NOT_GIVEN,
        options: NotGivenOr[Mapping[str, Any] | None] = NOT_GIVEN,
        output: NotGivenOr[OutputFormat | None] = NOT_GIVEN,
        diagnostics: NotGivenOr[DiagnosticsLevel | None] = NOT_GIVEN,
        timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
    ) -> Job:
        """Start a job (``POST /v1/jobs``, 202) with the fields of :meth:`Samples.create`; returns its handle.

        Jobs accept larger n and steps than synchronous requests. Never retried after the request may have
        reached the server (that could start two jobs).
        """
        body = _requests.sampling_body(
            model,
            n=n,
            seed=seed,
            steps=steps,
            params=params,
            options=options,
            output=output,
            diagnostics=diagnostics,
            timeout_s=timeout_s,
        )
        response = self._client.request(_requests.create_job(sampler, body, timeout=timeout))
        return Job(self._client, parse_model(JobStatus, response))

    def get(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> Job:
        """A handle on an existing job, with its current status. NotFoundError when unknown."""
        return Job(self._client, self.status(job_id, timeout=timeout))

    def status(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> JobStatus:
        """The job's current status (``GET /v1/jobs/{id}``)."""
        return parse_model(JobStatus, self._client.request(_requests.get_job(job_id, timeout=timeout)))

    def cancel(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> Job:
        """Cancel a running job or delete a finished one (``DELETE /v1/jobs/{id}``)."""
        response = self._client.request(_requests.cancel_job(job_id, timeout=timeout))
        return Job(self._client, parse_model(JobStatus, response))

    def result(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> SampleBatch:
        """The job's SampleBatch; ConflictError (409) while it has not succeeded."""
        return parse_model(SampleBatch, self._client.request(_requests.job_result(job_id, timeout=timeout)))

    def result_npz(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> NpzBatch:
        """The job's result as ``.npz`` (needs numpy); ConflictError (409) while it has not succeeded."""
        return parse_npz(self._client.request(_requests.job_result(job_id, npz=True, timeout=timeout)).content)

    def events(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> Iterator[JobStatus]:
        """Iterate the job's ``text/event-stream``: one JobStatus per progress event, ending at a terminal state.

        A stream that breaks (connection reset, a proxy's idle cut, a server restart) or that the server closes
        before a terminal state is opened again, up to the client's ``max_retries`` times in a row with backoff
        (the count starts over whenever a new status arrives). Each stream starts with the job's current status,
        which is not yielded twice. Out of retries, a broken stream raises APIConnectionError and a closed one ends
        the iteration.
        """
        client = self._client
        reconnect = _Reconnect()
        while True:
            response = client.request(_requests.job_events(job_id, timeout=timeout))
            broken: httpx.TransportError | None = None
            reconnect.opened()
            try:
                for event in iter_events(response.iter_lines()):
                    status = reconnect.new_status(job_from_event(event))
                    if status is not None:
                        yield status
                        if status.done:
                            return
            except httpx.TransportError as exc:
                broken = exc
            finally:
                response.close()
            retry = reconnect.next_try(client.max_retries, broken, response.request)
            if retry is None:
                return
            client._sleep(client.next_delay(retry, None))


class AsyncJobs(AsyncResource):
    async def create(
        self,
        model: str,
        *,
        sampler: str,
        n: int,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        steps: NotGivenOr[int | None] = NOT_GIVEN,
        params: NotGivenOr[Mapping[str, float] | None] = NOT_GIVEN,
        options: NotGivenOr[Mapping[str, Any] | None] = NOT_GIVEN,
        output: NotGivenOr[OutputFormat | None] = NOT_GIVEN,
        diagnostics: NotGivenOr[DiagnosticsLevel | None] = NOT_GIVEN,
        timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
    ) -> AsyncJob:
        """Async twin of :meth:`Jobs.create`."""
        body = _requests.sampling_body(
            model,
            n=n,
            seed=seed,
            steps=steps,
            params=params,
            options=options,
            output=output,
            diagnostics=diagnostics,
            timeout_s=timeout_s,
        )
        response = await self._client.request(_requests.create_job(sampler, body, timeout=timeout))
        return AsyncJob(self._client, parse_model(JobStatus, response))

    async def get(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> AsyncJob:
        return AsyncJob(self._client, await self.status(job_id, timeout=timeout))

    async def status(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> JobStatus:
        return parse_model(JobStatus, await self._client.request(_requests.get_job(job_id, timeout=timeout)))

    async def cancel(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> AsyncJob:
        response = await self._client.request(_requests.cancel_job(job_id, timeout=timeout))
        return AsyncJob(self._client, parse_model(JobStatus, response))

    async def result(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> SampleBatch:
        return parse_model(SampleBatch, await self._client.request(_requests.job_result(job_id, timeout=timeout)))

    async def result_npz(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> NpzBatch:
        """Async twin of :meth:`Jobs.result_npz`."""
        response = await self._client.request(_requests.job_result(job_id, npz=True, timeout=timeout))
        return parse_npz(response.content)

    async def events(self, job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> AsyncIterator[JobStatus]:
        """Async twin of :meth:`Jobs.events` (reconnects the same way)."""
        client = self._client
        reconnect = _Reconnect()
        while True:
            response = await client.request(_requests.job_events(job_id, timeout=timeout))
            broken: httpx.TransportError | None = None
            reconnect.opened()
            try:
                async for event in aiter_events(response.aiter_lines()):
                    status = reconnect.new_status(job_from_event(event))
                    if status is not None:
                        yield status
                        if status.done:
                            return
            except httpx.TransportError as exc:
                broken = exc
            finally:
                await response.aclose()
            retry = reconnect.next_try(client.max_retries, broken, response.request)
            if retry is None:
                return
            await client._sleep(client.next_delay(retry, None))
