"""``Client`` (blocking, over :class:`httpx.Client`) and ``AsyncClient`` (over :class:`httpx.AsyncClient`).

Both inherit configuration, request building, the retry policy and error mapping from
:class:`~gansampler._base_client.BaseClient`; each adds only sending, sleeping and the retry loop.

>>> from gansampler import Client
>>> with Client("http://127.0.0.1:8000") as client:
...     batch = client.samples.create("digits-dcgan", sampler="rep", n=16, seed=7)
...     batch.diagnostics.acceptance_rate
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

import httpx

from ._base_client import (
    BaseClient,
    RequestSpec,
    TimeoutArg,
    make_status_error,
    make_transport_error,
    should_retry_exception,
    should_retry_status,
)
from ._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S
from .resources.health import AsyncHealth, Health
from .resources.jobs import AsyncJobs, Jobs
from .resources.limits import AsyncLimits, Limits
from .resources.models import AsyncModels, Models
from .resources.samples import AsyncSamples, Samples

__all__ = ["AsyncClient", "Client"]


class Client(BaseClient):
    """Blocking client. See :class:`~gansampler._base_client.BaseClient` for the arguments; also:

    Args:
        http_client: an ``httpx.Client`` to send with (its own base_url/timeout are not used); closed by
            :meth:`close` only when the SDK created it.
        transport: an ``httpx.BaseTransport`` for the client the SDK creates (e.g. ``httpx.MockTransport``).

    Resources: ``client.samples``, ``client.models``, ``client.jobs``, ``client.health``, ``client.limits``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, default_headers=default_headers
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(transport=transport)
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic
        self.samples = Samples(self)
        self.models = Models(self)
        self.jobs = Jobs(self)
        self.health = Health(self)
        self.limits = Limits(self)

    def request(self, spec: RequestSpec) -> httpx.Response:
        """Send ``spec`` with retries; returns a 2xx response (unread when ``spec.stream``) or raises APIError."""
        max_retries = self.retries_for(spec)
        retry = 0
        while True:
            request = self.build_request(spec)
            try:
                response = self._http.send(request, stream=spec.stream)
            except httpx.TransportError as exc:
                if retry < max_retries and should_retry_exception(exc, spec.is_idempotent, spec.method):
                    self._sleep(self.next_delay(retry, None))
                    retry += 1
                    continue
                raise make_transport_error(exc, request) from exc
            if response.is_success or response.status_code in spec.ok_statuses:
                return response
            if retry < max_retries and should_retry_status(response.status_code, spec.is_idempotent):
                response.close()
                self._sleep(self.next_delay(retry, response.headers))
                retry += 1
                continue
            response.read()
            response.close()
            raise make_status_error(response)

    def close(self) -> None:
        """Close the underlying HTTP client if the SDK created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(BaseClient):
    """Asynchronous twin of :class:`Client` (same arguments, ``httpx.AsyncClient`` / ``httpx.AsyncBaseTransport``);
    every resource method is awaited, ``jobs.events`` is an async iterator.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, default_headers=default_headers
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(transport=transport)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._clock: Callable[[], float] = time.monotonic
        self.samples = AsyncSamples(self)
        self.models = AsyncModels(self)
        self.jobs = AsyncJobs(self)
        self.health = AsyncHealth(self)
        self.limits = AsyncLimits(self)

    async def request(self, spec: RequestSpec) -> httpx.Response:
        """Send ``spec`` with retries; returns a 2xx response (unread when ``spec.stream``) or raises APIError."""
        max_retries = self.retries_for(spec)
        retry = 0
        while True:
            request = self.build_request(spec)
            try:
                response = await self._http.send(request, stream=spec.stream)
            except httpx.TransportError as exc:
                if retry < max_retries and should_retry_exception(exc, spec.is_idempotent, spec.method):
                    await self._sleep(self.next_delay(retry, None))
                    retry += 1
                    continue
                raise make_transport_error(exc, request) from exc
            if response.is_success or response.status_code in spec.ok_statuses:
                return response
            if retry < max_retries and should_retry_status(response.status_code, spec.is_idempotent):
                await response.aclose()
                await self._sleep(self.next_delay(retry, response.headers))
                retry += 1
                continue
            await response.aread()
            await response.aclose()
            raise make_status_error(response)

    async def close(self) -> None:
        """Close the underlying HTTP client if the SDK created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
