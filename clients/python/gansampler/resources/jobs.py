"""``client.jobs``: long sampling runs (``/v1/jobs``) and the :class:`Job` / :class:`AsyncJob` handles.

>>> job = client.jobs.create("digits-dcgan", sampler="rep", n=1024, steps=5000, seed=7)
>>> job.wait(progress=True)        # progress bar on stderr; returns the final JobStatus
>>> batch = job.result()           # SampleBatch; JobFailedError if the job failed / was cancelled
>>> page = client.jobs.list(state=["queued", "running"], limit=20)   # JobList: .jobs newest first, .next cursor
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import httpx

from .. import _requests
from .._base_client import TimeoutArg, parse_model
from .._constants import DEFAULT_POLL_INTERVAL_S, DEFAULT_WAIT_OUTAGE_S
from .._decode import NpzBatch, parse_npz
from .._models import JobList, JobStatus, SampleBatch
from .._requests import DiagnosticsLevel, OutputFormat
from .._sse import aiter_events, iter_events
from .._types import NOT_GIVEN, NotGivenOr
from ._job_handles import OUTAGE_ERRORS, AsyncJob, Job, _Outage, _Reconnect, job_from_event
from ._resource import AsyncResource, SyncResource

__all__ = ["AsyncJob", "AsyncJobs", "Job", "Jobs", "job_from_event"]

States = str | Sequence[str]


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

    def list(
        self,
        *,
        state: States | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
    ) -> JobList:
        """One page of jobs, newest first (``GET /v1/jobs``): ``state`` filters ("failed", or several states),
        ``limit`` is the page size (the server's default 50, at most 1000), ``cursor`` the previous page's ``next``.
        The server deletes finished jobs after its retention time."""
        return parse_model(JobList, self._client.request(_requests.list_jobs(state, limit, cursor, timeout=timeout)))

    def list_all(
        self, *, state: States | None = None, page_size: int | None = None, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN
    ) -> Iterator[JobStatus]:
        """Every job, newest first, fetching one page of ``page_size`` at a time as the iteration goes."""
        cursor: str | None = None
        while True:
            page = self.list(state=state, limit=page_size, cursor=cursor, timeout=timeout)
            yield from page.jobs
            if page.next is None:
                return
            cursor = page.next

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

    def events(
        self,
        job_id: str,
        *,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
        outage_timeout: float | None = DEFAULT_WAIT_OUTAGE_S,
    ) -> Iterator[JobStatus]:
        """Iterate the job's ``text/event-stream``: one JobStatus per progress event, ending at a terminal state.

        A stream that breaks (connection reset, a proxy's idle cut, a server restart) or that the server closes
        before a terminal state is opened again, up to the client's ``max_retries`` times in a row with backoff
        (the count starts over whenever a new status arrives). Each stream starts with the job's current status,
        which is not yielded twice. Out of retries, a broken stream raises APIConnectionError and a closed one ends
        the iteration. A server that cannot be reached or answers 503 when the stream is reopened (a restart: the
        server keeps the job and runs it again) is tried again for ``outage_timeout`` s in a row (None: not at all).
        """
        client = self._client
        reconnect = _Reconnect()
        outage = _Outage(client._clock, outage_timeout)
        while True:
            try:
                response = client.request(_requests.job_events(job_id, timeout=timeout))
            except OUTAGE_ERRORS as exc:
                outage.failed(exc)
                client._sleep(DEFAULT_POLL_INTERVAL_S)
                continue
            outage.passed()
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

    async def list(
        self,
        *,
        state: States | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
    ) -> JobList:
        """Async twin of :meth:`Jobs.list`."""
        response = await self._client.request(_requests.list_jobs(state, limit, cursor, timeout=timeout))
        return parse_model(JobList, response)

    async def list_all(
        self, *, state: States | None = None, page_size: int | None = None, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN
    ) -> AsyncIterator[JobStatus]:
        """Async twin of :meth:`Jobs.list_all`."""
        cursor: str | None = None
        while True:
            page = await self.list(state=state, limit=page_size, cursor=cursor, timeout=timeout)
            for status in page.jobs:
                yield status
            if page.next is None:
                return
            cursor = page.next

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

    async def events(
        self,
        job_id: str,
        *,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
        outage_timeout: float | None = DEFAULT_WAIT_OUTAGE_S,
    ) -> AsyncIterator[JobStatus]:
        """Async twin of :meth:`Jobs.events` (reconnects the same way)."""
        client = self._client
        reconnect = _Reconnect()
        outage = _Outage(client._clock, outage_timeout)
        while True:
            try:
                response = await client.request(_requests.job_events(job_id, timeout=timeout))
            except OUTAGE_ERRORS as exc:
                outage.failed(exc)
                await client._sleep(DEFAULT_POLL_INTERVAL_S)
                continue
            outage.passed()
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
