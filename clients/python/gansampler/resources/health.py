"""``client.health``: ``/livez`` and ``/readyz``, and waiting for a server that is still loading its models."""

from __future__ import annotations

from .. import _requests
from .._base_client import TimeoutArg, parse_model
from .._constants import DEFAULT_READY_TIMEOUT_S, READY_POLL_INTERVAL_S
from .._exceptions import APIConnectionError, WaitTimeoutError
from .._models import Readiness
from .._types import NOT_GIVEN, NotGivenOr
from ._resource import AsyncResource, SyncResource

__all__ = ["AsyncHealth", "Health"]


def _not_ready_message(last: Readiness | None, error: APIConnectionError | None, timeout: float) -> str:
    detail = f"models {last.models}" if last is not None else f"{error.message}" if error else "no answer"
    return f"server not ready after {timeout:g} s: {detail}"


class Health(SyncResource):
    def live(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> bool:
        """True when the process answers ``/livez``; APIConnectionError when it cannot be reached."""
        self._client.request(_requests.livez(timeout=timeout))
        return True

    def ready(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> Readiness:
        """``/readyz``: whether the server is ready and each model's state (never raises on 503)."""
        return parse_model(Readiness, self._client.request(_requests.readyz(timeout=timeout)))

    def wait_ready(
        self, *, timeout: float = DEFAULT_READY_TIMEOUT_S, poll_interval: float = READY_POLL_INTERVAL_S
    ) -> Readiness:
        """Poll ``/readyz`` (connection errors count as "not yet") until ready; WaitTimeoutError after ``timeout``."""
        clock, sleep = self._client._clock, self._client._sleep
        deadline = clock() + timeout
        last: Readiness | None = None
        error: APIConnectionError | None = None
        while True:
            try:
                last = parse_model(Readiness, self._client.request(_requests.readyz(max_retries=0)))
                if last.ready:
                    return last
            except APIConnectionError as exc:
                error = exc
            remaining = deadline - clock()
            if remaining <= 0:
                raise WaitTimeoutError(_not_ready_message(last, error, timeout), timeout)
            sleep(min(poll_interval, remaining))


class AsyncHealth(AsyncResource):
    async def live(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> bool:
        """Async twin of :meth:`Health.live`."""
        await self._client.request(_requests.livez(timeout=timeout))
        return True

    async def ready(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> Readiness:
        """Async twin of :meth:`Health.ready`."""
        return parse_model(Readiness, await self._client.request(_requests.readyz(timeout=timeout)))

    async def wait_ready(
        self, *, timeout: float = DEFAULT_READY_TIMEOUT_S, poll_interval: float = READY_POLL_INTERVAL_S
    ) -> Readiness:
        """Async twin of :meth:`Health.wait_ready`."""
        clock, sleep = self._client._clock, self._client._sleep
        deadline = clock() + timeout
        last: Readiness | None = None
        error: APIConnectionError | None = None
        while True:
            try:
                last = parse_model(Readiness, await self._client.request(_requests.readyz(max_retries=0)))
                if last.ready:
                    return last
            except APIConnectionError as exc:
                error = exc
            remaining = deadline - clock()
            if remaining <= 0:
                raise WaitTimeoutError(_not_ready_message(last, error, timeout), timeout)
            await sleep(min(poll_interval, remaining))
