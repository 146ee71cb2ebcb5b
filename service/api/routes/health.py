"""``/livez``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.api.deps import ServicesDep
from service.api.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Liveness, summary="200 while the process serves")
async def livez() -> Liveness:
    return Liveness()


@router.get("/readyz", response_model=Readiness, summary="200 once every model is ready or failed-and-reported",
            responses={503: {"model": Readiness, "description": "still loading, no model ready, or shutting down"}})
async def readyz(services: ServicesDep) -> JSONResponse:
    ready, models = services.hub.readiness()
    draining = services.engine.draining  # a load balancer stops sending work here while running requests finish
    ready = ready and services.loaded.is_set() and not draining
    return JSONResponse(Readiness(ready=ready, models=models, draining=draining).model_dump(),
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    services.engine.gauges.device_memory_bytes = services.hub.memory()
    services.engine.gauges.models_ready = {mid: s == "ready" for mid, s in services.hub.readiness()[1].items()}
    services.engine.publish_gauges()
    render = getattr(services.sink, "render", None)
    if render is None:
        return Response(b"", media_type="text/plain; version=0.0.4")
    body, content_type = render()
    return Response(body, media_type=content_type)
