"""The app's services and the dependencies the routes share (``Annotated`` aliases)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from service.api.errors import ERROR_TABLE, error_body
from service.api.hub import ModelHub
from service.config import Settings
from service.engine.engine import Engine
from service.engine.jobs import JobManager
from service.engine.stats import StatsSink
from service.engine.threads import in_own_thread

T = TypeVar("T")
log = logging.getLogger(__name__)
DRAIN_POLL_S = 0.05  # how often a shutdown checks whether the running requests have finished


@dataclass
class Services:
    """Everything the lifespan builds; on ``app.state.services``."""

    settings: Settings
    sink: StatsSink
    engine: Engine
    hub: ModelHub
    jobs: JobManager
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    compute_threads: int | None = None  # torch CPU threads of the device workers (and of model loading)

    async def wait_loaded(self) -> None:
        await self.loaded.wait()

    async def drain(self, grace_s: float) -> None:
        """A graceful shutdown's first part (SIGTERM / SIGINT, before the server closes connections): take no new
        work (503 with Retry-After; ``/readyz`` says ``draining``), queue running jobs again for the next start and
        end their event streams, give running requests ``grace_s`` seconds to finish, then answer what is left with a 503
        (JSON, Retry-After) by stopping the engine."""
        self.engine.drain()
        await self.jobs.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        left = self.engine.in_flight()
        if left:
            log.info("shutting down: waiting up to %.3g s for %d running chains", grace_s, left)
        while self.engine.in_flight() and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)  # polls a deadline; the requests' handlers answer on their own
        left = self.engine.in_flight()
        if left:
            log.warning("shutting down: %d chains still running after %.3g s (shutdown_grace_s) get a 503",
                        left, grace_s)
        await asyncio.to_thread(self.engine.stop)

    async def model_work(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` that runs the networks (load, reload, calibrate): in a thread of its own that ends with it,
        on the device workers' CPU threads (:func:`service.engine.threads.in_own_thread`)."""
        return await in_own_thread(fn, *args, threads=self.compute_threads)


async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def _error_responses() -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status, type_ in sorted(set(ERROR_TABLE.values())):
        out[status] = {"model": _error_model(), "description": type_,
                       "content": {"application/json": {"example": error_body(type_, "...", None)}}}
    return out


def _error_model() -> Any:
    from service.api.schemas import ErrorBody

    return ErrorBody


ERROR_RESPONSES = _error_responses()
