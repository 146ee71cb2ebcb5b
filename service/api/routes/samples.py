"""``POST /v1/samples/{sampler}``: validate, queue on the engine, await without blocking, encode."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive

from service.api.deps import ERROR_RESPONSES, ServicesDep
from service.api.encoding import NPZ_MEDIA_TYPE
from service.api.negotiation import wants_npz
from service.api.results import npz_body, response_body
from service.api.sampling import Limits, prepare
from service.api.schemas import SAMPLER_NAMES, SampleRequest, SampleResponse
from service.api.strict_json import StrictJSONRoute
from service.engine.ticket import Priority

INLINE_ENCODE_MAX_VALUES = 4096  # below this, encoding on the loop is cheaper than a thread hop

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["samples"])

async def client_gone(receive: Receive) -> None:
    """Completes when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


SamplerPath = Path(description=f"one of {', '.join(SAMPLER_NAMES)}", examples=["mh"])


@router.post(
    "/samples/{sampler}",
    response_model=SampleResponse,
    response_model_exclude_none=True,
    summary="Draw n samples with a sampler",
    responses={200: {"content": {NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
               **ERROR_RESPONSES},
)
async def create_samples(body: SampleRequest, request: Request, services: ServicesDep,
                         sampler: str = SamplerPath) -> Response:
    """Runs ``n`` chains of ``sampler`` on ``model``, batched at the MCMC step with every other request on the
    same model and sampler. ``Accept: application/x-npz`` returns arrays + diagnostics in one binary body."""
    t0 = time.perf_counter()
    npz = wants_npz(request.headers.get("accept"))  # 406 before any chain runs
    s = services.settings
    prep = prepare(body, sampler, services.hub, Limits.interactive(s), Priority.INTERACTIVE, s.max_trace_points)
    ticket = services.engine.submit(prep.work)
    result = await services.engine.wait(ticket, client_gone(request.receive))
    request.state.queue_s = result.queue_s
    total = time.perf_counter() - t0
    small = prep.output == "array" and result.output.x.numel() <= INLINE_ENCODE_MAX_VALUES
    if npz:
        data = npz_body(prep, result, total) if small else await asyncio.to_thread(npz_body, prep, result, total)
        return Response(data, media_type=NPZ_MEDIA_TYPE)
    payload = response_body(prep, result, total) if small else await asyncio.to_thread(response_body, prep, result, total)
    if payload["diagnostics"] is None:
        del payload["diagnostics"]
    return JSONResponse(payload)
