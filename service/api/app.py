"""``create_app(settings)``: the FastAPI app over one engine, one model hub and one job manager.

Lifespan: start the engine's device workers, open the job store (jobs that were running when the process died run
again, up to ``job_max_attempts`` starts, then end ``interrupted``), then load and warm up the models in the background (``/livez`` answers meanwhile;
``/readyz`` says ready once every model is ready or failed-and-reported). Shutdown stops jobs and workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from service.api import docs_ui, errors
from service.api.auth import Auth
from service.api.deps import Services
from service.api.hub import ModelHub
from service.api.middleware import RequestContext
from service.api.results import npz_body, response_body
from service.api.routes import admin, health, jobs, models, samples
from service.api.sampling import Limits, Prepared, prepare
from service.api.schemas import JobRequest, exact_integer_bounds
from service.config import Settings
from service.engine.budget import StepBudget
from service.engine.engine import Engine, EngineConfig
from service.engine.jobs import JobManager
from service.engine.jobstore import JobStore
from service.engine.stats import StatsSink
from service.engine.threads import settle_thread_count
from service.engine.ticket import ChainResult, Priority, Work
from service.engine.worker import EngineObserver
from service.registry import LoadedModel

log = logging.getLogger(__name__)

API_VERSION = "1"
CORS_METHODS = ["GET", "HEAD", "POST", "DELETE"]
CORS_HEADERS = ["authorization", "x-api-key", "content-type", "accept", "request-id", "x-request-id",
                "last-event-id"]
CORS_EXPOSED = ["request-id", "retry-after", "allow"]  # what a browser client may read of a response
CORS_MAX_AGE_S = 600  # how long a browser may cache a preflight


def _default_sink() -> StatsSink:
    from service.metrics import PrometheusSink

    return PrometheusSink()


def create_app(
    settings: Settings | None = None, *, sink: StatsSink | None = None, observer: EngineObserver | None = None,
    budget: StepBudget | None = None,
) -> FastAPI:
    """The app. ``sink`` defaults to a fresh PrometheusSink (own CollectorRegistry); ``observer`` sees engine
    submissions and steps (tests, benchmarks); ``budget`` replaces the engine's step budget (tests simulate a
    device's memory with it)."""
    settings = settings if settings is not None else Settings()
    sink = sink if sink is not None else _default_sink()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = settle_thread_count()  # the event loop's torch thread count, before a worker switches its own
        engine = Engine(EngineConfig.from_settings(settings), sink, observer, budget)
        engine.start()

        def size_steps(model: LoadedModel) -> None:
            """At warm-up: each default pool's step budget (a GPU probe). Nothing to measure on a CPU, where building
            every sampler now would only cost time (DRS draws a pilot batch when the manifest has no logit_max)."""
            if engine.budget.measures(model.device):
                engine.budget.prepare(hub.default_pools(model))

        hub = ModelHub(settings.models_dir, settings.devices, sink, engine.least_loaded, size_steps,
                       (settings.max_steps, settings.max_job_steps))
        store = await asyncio.to_thread(JobStore, settings.data_dir)
        manager = JobManager(store, engine, _job_prepare(hub, settings), _job_render, settings.max_running_jobs,
                             settings.job_progress_interval_s, retention_s=settings.job_retention_s,
                             max_attempts=settings.job_max_attempts)
        services = Services(settings, sink, engine, hub, manager, compute_threads=threads)
        app.state.services = services
        await manager.start(services.loaded)

        async def load() -> None:
            try:
                await services.model_work(hub.start)
            finally:
                services.loaded.set()
                states = hub.readiness()[1]
                ready = sorted(m for m, s in states.items() if s == "ready")
                log.info("ready: %d of %d models (%s)", len(ready), len(states), ", ".join(ready) or "none")
                engine.gauges.models_ready = {m: s == "ready" for m, s in states.items()}
                engine.gauges.device_memory_bytes = hub.memory()
                engine.publish_gauges()

        loader = asyncio.create_task(load(), name="model-loader")
        try:
            yield
        finally:
            await manager.stop()
            await asyncio.to_thread(engine.stop)
            loader.cancel()

    app = FastAPI(
        title="gansampler",
        version=API_VERSION,
        summary="Post-hoc sampling for trained GANs: MH-GAN, REP-GAN, DDLS, DRS and SIR over a model registry.",
        lifespan=lifespan,
        docs_url=None,  # docs_ui serves /docs and /redoc from local files (no CDN)
        redoc_url=None,
    )
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = exact_integer_bounds(generate_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    errors.install(app)
    docs_ui.install(app)
    for module in (samples, models, jobs, admin, health):
        app.include_router(module.router)
    app.add_middleware(RequestContext, sink=sink, max_body_bytes=settings.max_body_bytes,
                       auth=Auth(settings.api_keys, settings.admin_token))
    if settings.cors_origins:  # outermost: a browser's preflight is answered before anything else runs
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=CORS_METHODS,
                           allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, max_age=CORS_MAX_AGE_S)
    return app


def _job_prepare(hub: ModelHub, settings: Settings) -> Any:
    def prep(request: dict[str, Any]) -> tuple[Work, Prepared]:
        req = JobRequest.model_validate(request)
        p = prepare(req, req.sampler, hub, Limits.job(settings), Priority.JOB, settings.max_trace_points)
        return p.work, p

    return prep


def _job_render(prep: Prepared, result: ChainResult) -> tuple[dict[str, Any], bytes]:
    total = result.queue_s + result.compute_s
    body = response_body(prep, result, total)
    if body["diagnostics"] is None:
        del body["diagnostics"]
    return body, npz_body(prep, result, total)
