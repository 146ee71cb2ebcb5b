"""``GET /v1/models`` and ``GET /v1/models/{name}[@version]``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from service.api.deps import ERROR_RESPONSES, ServicesDep, require_api_key
from service.api.describe import model_info
from service.api.schemas import ModelInfo, ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)


@router.get("/models", response_model=ModelList, summary="Every model version with its state")
async def list_models(services: ServicesDep) -> ModelList:
    hub = services.hub
    return ModelList(models=await asyncio.to_thread(lambda: [model_info(hub, e) for e in hub.entries()]))


@router.get("/models/{ref}", response_model=ModelInfo, summary='One model: "name" (latest ready) or "name@version"')
async def get_model(ref: str, services: ServicesDep) -> ModelInfo:
    hub = services.hub
    return await asyncio.to_thread(lambda: model_info(hub, hub.entry(ref)))
