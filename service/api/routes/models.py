"""``GET /v1/models``, ``GET /v1/models/{name}[@version]`` and ``GET /v1/limits``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.api.deps import ERROR_RESPONSES, ServicesDep
from service.api.describe import model_info
from service.api.schemas import IgnoredEntry, JobLimits, ModelInfo, ModelList, RequestLimits, ServerLimits

router = APIRouter(prefix="/v1", tags=["models"], responses=ERROR_RESPONSES)


@router.get("/models", response_model=ModelList, summary="Every model version with its state")
async def list_models(services: ServicesDep) -> ModelList:
    hub = services.hub
    models = await asyncio.to_thread(lambda: [model_info(hub, e) for e in hub.entries()])
    root = hub.primary.root
    ignored = [IgnoredEntry(path=str(i.path.relative_to(root)) if i.path.is_relative_to(root) else str(i.path),
                            reason=i.reason) for i in hub.primary.ignored()]
    return ModelList(models=models, ignored=ignored)


@router.get("/models/{ref}", response_model=ModelInfo, summary='One model: "name" (latest ready) or "name@version"')
async def get_model(ref: str, services: ServicesDep) -> ModelInfo:
    hub = services.hub
    return await asyncio.to_thread(lambda: model_info(hub, hub.entry(ref)))


@router.get("/limits", response_model=ServerLimits, summary="The limits this server enforces on requests and jobs")
async def limits(services: ServicesDep) -> ServerLimits:
    s = services.settings
    return ServerLimits(
        requests=RequestLimits(max_n=s.max_n, max_steps=s.max_steps, max_chain_steps=s.max_chain_steps,
                               max_result_bytes=s.max_result_bytes, max_timeout_s=s.max_timeout_s,
                               default_timeout_s=s.default_timeout_s, max_body_bytes=s.max_body_bytes,
                               max_queue_chain_steps=s.max_queue_chain_steps),
        jobs=JobLimits(max_n=s.max_job_n, max_steps=s.max_job_steps, max_chain_steps=s.max_job_chain_steps,
                       max_result_bytes=s.max_job_result_bytes, max_queued_jobs=s.max_queued_jobs,
                       max_queued_job_chain_steps=s.max_queued_job_chain_steps, max_running_jobs=s.max_running_jobs,
                       retention_s=s.job_retention_s),
    )
