"""Request bodies whose JSON objects repeat a name are refused (400 ``bad_request`` naming the name), not read
last-wins: ``{"n": 5000, "n": 2}`` is a client bug or a smuggling attempt, and RFC 8259 leaves its meaning open.

The routes that take a JSON body (samples, jobs) use :class:`StrictJSONRoute`, which hands FastAPI a request whose ``json()`` parses
with a duplicate check; FastAPI reports its :class:`json.JSONDecodeError` as ``json_invalid``, which
:func:`service.api.errors.validation_error` turns into the 400.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise json.JSONDecodeError(f"duplicate name {name!r} in a JSON object (each name may appear once)", "", 0)
        obj[name] = value
    return obj


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_unique_names)
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
