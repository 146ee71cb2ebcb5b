"""``/v1/jobs``: long runs, persisted, with progress (SSE), cancellation and results that survive a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service.api.deps import ERROR_RESPONSES, ServicesDep, require_api_key
from service.api.encoding import NPZ_MEDIA_TYPE
from service.api.negotiation import wants_npz
from service.api.schemas import Job, JobRequest, SampleResponse

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_api_key)],
                   responses=ERROR_RESPONSES)


@router.post("", response_model=Job, status_code=202, summary="Start a long run")
async def create_job(body: JobRequest, services: ServicesDep) -> JSONResponse:
    """Accepts larger n and steps than synchronous requests (``max_job_n``, ``max_job_steps``)."""
    job = await services.jobs.create(body.model_dump(exclude_none=True))
    return JSONResponse(job, status_code=202)


@router.get("/{job_id}", response_model=Job, summary="A job's state and progress")
async def get_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    return await services.jobs.get(job_id)  # type: ignore[no-any-return]


@router.get("/{job_id}/result", response_model=SampleResponse, response_model_exclude_none=True,
            summary="The sampling response; 409 until the job succeeded",
            responses={200: {"content": {NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
async def get_result(job_id: str, request: Request, services: ServicesDep) -> Response:
    npz = wants_npz(request.headers.get("accept"))
    data = await services.jobs.result(job_id, npz)
    return Response(data, media_type=NPZ_MEDIA_TYPE if npz else "application/json")


@router.delete("/{job_id}", response_model=Job, summary="Cancel (queued/running) or delete (finished)")
async def delete_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    return await services.jobs.delete(job_id)  # type: ignore[no-any-return]


@router.get("/{job_id}/events", summary="Server-sent progress events until a terminal state",
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def job_events(job_id: str, services: ServicesDep) -> StreamingResponse:
    await services.jobs.get(job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[bytes]:
        async for job in services.jobs.events(job_id):
            yield f"event: progress\ndata: {json.dumps(job)}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
