"""``client.models``: the server's model registry (``GET /v1/models``, ``GET /v1/models/{name}``)."""

from __future__ import annotations

import builtins

from pydantic import BaseModel

from .. import _requests
from .._base_client import TimeoutArg, parse_model
from .._models import ModelInfo
from .._types import NOT_GIVEN, NotGivenOr
from ._resource import AsyncResource, SyncResource

__all__ = ["AsyncModels", "Models"]


class ModelList(BaseModel):
    """Body of ``GET /v1/models``."""

    models: list[ModelInfo]


class Models(SyncResource):
    def list(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> builtins.list[ModelInfo]:
        """Every version of every model, each with its ``state`` (``loading | ready | failed | unloaded``)."""
        return parse_model(ModelList, self._client.request(_requests.list_models(timeout=timeout))).models

    def get(self, name: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> ModelInfo:
        """``"name"`` → its latest ready version; ``"name@3"`` → that version. NotFoundError when unknown."""
        return parse_model(ModelInfo, self._client.request(_requests.get_model(name, timeout=timeout)))


class AsyncModels(AsyncResource):
    async def list(self, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> builtins.list[ModelInfo]:
        """Async twin of :meth:`Models.list`."""
        return parse_model(ModelList, await self._client.request(_requests.list_models(timeout=timeout))).models

    async def get(self, name: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> ModelInfo:
        """Async twin of :meth:`Models.get`."""
        return parse_model(ModelInfo, await self._client.request(_requests.get_model(name, timeout=timeout)))
