"""``/v1/jobs``: long runs, persisted, with progress (SSE), cancellation and results that survive a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service.api.deps import ERROR_RESPONSES, Services, ServicesDep
from service.api.encoding import NPZ_MEDIA_TYPE
from service.api.errors import InvalidRequest
from service.api.negotiation import wants_npz
from service.api.schemas import Job, JobList, JobRequest, SampleResponse
from service.api.strict_json import StrictJSONRoute
from service.engine.jobs import JOB_STATES
from service.engine.jobstore import BadCursor

DEFAULT_JOB_LIST_LIMIT = 50
MAX_JOB_LIST_LIMIT = 1000
SSE_RETRY_MS = 2000  # the reconnection delay an events stream suggests to EventSource clients
SSE_HEARTBEAT = b": keep-alive\n\n"
# one state or a comma list (empty items skipped): documented in the schema, checked by parse_states (clear message)
STATE_LIST_PATTERN = "^[ ,]*(?:(?:{s}) *(?:,[ ,]*|$))*$".format(s="|".join(JOB_STATES))
SSE_EVENT_SCHEMA: dict[str, Any] = {  # one event of the stream (OpenAPI 3.1 reads an event stream's schema per event)
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["progress"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": "#/components/schemas/Job"}, "description": "the job, as GET returns it"},
        "id": {"type": "string", "description": "1, 2, ... within this stream"},
        "retry": {"type": "integer", "description": "reconnection delay in ms, on the first event"},
    },
}

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/jobs", tags=["jobs"],
                   responses=ERROR_RESPONSES)


@router.post("", response_model=Job, status_code=202, summary="Start a long run")
async def create_job(body: JobRequest, services: ServicesDep) -> JSONResponse:
    """Accepts larger n and steps than synchronous requests (``max_job_n``, ``max_job_steps``)."""
    settings = services.settings
    job = await services.jobs.create(body.model_dump(exclude_none=True), max_queued=settings.max_queued_jobs,
                                     max_queued_steps=settings.max_queued_job_chain_steps,
                                     retry_after_s=settings.retry_after_s)
    return JSONResponse(job, status_code=202)


def parse_states(values: list[str]) -> frozenset[str] | None:
    """``?state=`` values, repeated and/or comma lists, as a set (None: no filter); 422 naming an unknown one."""
    states = {s.strip() for v in values for s in v.split(",") if s.strip()}
    for state in sorted(states):
        if state not in JOB_STATES:
            raise InvalidRequest(f"state must be one of {', '.join(JOB_STATES)}, got {state!r}", "state")
    return frozenset(states) or None


@router.get("", response_model=JobList, summary="Jobs, newest first, a page at a time")
async def list_jobs(
    services: ServicesDep,
    state: Annotated[list[str], Query(description="only jobs in these states (repeat, or a comma list)",
                                      json_schema_extra={"items": {"type": "string",
                                                                   "pattern": STATE_LIST_PATTERN}})] = [],  # noqa: B006
    limit: Annotated[int, Query(description=f"jobs per page, 1..{MAX_JOB_LIST_LIMIT}")] = DEFAULT_JOB_LIST_LIMIT,
    cursor: Annotated[str | None, Query(description="the `next` of the previous page")] = None,
) -> dict[str, Any]:
    """Every job the server keeps (finished ones until ``job_retention_s`` after they ended)."""
    if not 1 <= limit <= MAX_JOB_LIST_LIMIT:
        raise InvalidRequest(f"limit must be in [1, {MAX_JOB_LIST_LIMIT}], got {limit}", "limit")
    states = parse_states(state)
    try:
        jobs, nxt = await services.jobs.list_page(states, limit, cursor or None)
    except BadCursor:
        shown = cursor if cursor is None or len(cursor) <= 80 else cursor[:80] + "..."
        raise InvalidRequest(f"cursor must be the `next` of a previous GET /v1/jobs page, got {shown!r}",
                             "cursor") from None
    return {"jobs": jobs, "next": nxt}


@router.get("/{job_id}", response_model=Job, summary="A job's state and progress")
async def get_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    return await services.jobs.get(job_id)  # type: ignore[no-any-return]


@router.get("/{job_id}/result", response_model=SampleResponse, response_model_exclude_none=True,
            summary="The sampling response; 409 unless the job succeeded",
            responses={200: {"content": {NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
async def get_result(job_id: str, request: Request, services: ServicesDep) -> Response:
    npz = wants_npz(request.headers.get("accept"))
    data = await services.jobs.result(job_id, npz)
    return Response(data, media_type=NPZ_MEDIA_TYPE if npz else "application/json")


@router.delete("/{job_id}", response_model=Job, summary="Cancel (queued/running) or delete (finished)")
async def delete_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    return await services.jobs.delete(job_id)  # type: ignore[no-any-return]


@router.get("/{job_id}/events", summary="Server-sent progress events until a terminal state",
            responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}}})
async def job_events(job_id: str, services: ServicesDep) -> StreamingResponse:
    await services.jobs.get(job_id)  # 404 before the stream starts
    return StreamingResponse(event_stream(services, job_id), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


async def event_stream(services: Services, job_id: str) -> AsyncIterator[bytes]:
    """``event: progress`` + ``data: <Job JSON>`` + ``id: <n>`` (1, 2, ... within this stream; the first event also
    carries ``retry:``), and ``: keep-alive`` comments when nothing was sent for ``job_heartbeat_s``."""
    n = 0
    async for job in services.jobs.events(job_id, services.settings.job_heartbeat_s):
        if job is None:
            yield SSE_HEARTBEAT
            continue
        n += 1
        retry = f"retry: {SSE_RETRY_MS}\n" if n == 1 else ""
        yield f"event: progress\ndata: {json.dumps(job)}\nid: {n}\n{retry}\n".encode()
