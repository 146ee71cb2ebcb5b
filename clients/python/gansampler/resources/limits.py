"""``client.limits``: the limits the server enforces (``GET /v1/limits``), to size requests before sending them."""

from __future__ import annotations

from .. import _requests
from .._base_client import TimeoutArg, parse_model
from .._models import ServerLimits
from .._types import NOT_GIVEN, NotGivenOr
from ._resource import AsyncResource, SyncResource

__all__ = ["AsyncLimits", "Limits"]


class Limits(SyncResource):
    def get(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> ServerLimits:
        """The server's limits: ``.requests`` (``max_n``, ``max_steps``, ...) and ``.jobs``.

        >>> per_request = client.limits.get().requests.max_n   # split a large draw into requests of this size
        """
        return parse_model(ServerLimits, self._client.request(_requests.get_limits(timeout=timeout)))


class AsyncLimits(AsyncResource):
    async def get(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> ServerLimits:
        """Async twin of :meth:`Limits.get`."""
        return parse_model(ServerLimits, await self._client.request(_requests.get_limits(timeout=timeout)))
