"""``POST /v1/admin/models/{name}/{version}:load | :unload | :reload | :calibrate`` (admin bearer token)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Literal

from fastapi import APIRouter

from service.api.deps import ERROR_RESPONSES, ServicesDep
from service.api.describe import model_info
from service.api.errors import Conflict
from service.api.schemas import AdminResult

CalibrationMethod = Literal["platt", "isotonic", "identity"]

router = APIRouter(prefix="/v1/admin", tags=["admin"],
                   responses=ERROR_RESPONSES)


def _describe(services: ServicesDep, name: str, version: int, action: str) -> AdminResult:
    hub = services.hub
    return AdminResult(action=action, model=model_info(hub, hub.entry(f"{name}@{version}")))


@router.post("/models/{name}/{version}:load", response_model=AdminResult, summary="Load a version (409 if loaded)")
async def load(name: str, version: int, services: ServicesDep) -> AdminResult:
    hub = services.hub
    await asyncio.to_thread(hub.rescan)  # a version copied in after startup is loadable without a restart
    e = hub.entry(f"{name}@{version}")
    if e.state == "ready":
        raise Conflict(f"model {e.id} is already loaded", "version")
    await services.model_work(hub.load, name, version)
    return _describe(services, name, version, "load")


@router.post("/models/{name}/{version}:unload", response_model=AdminResult, summary="Unload a version")
async def unload(name: str, version: int, services: ServicesDep) -> AdminResult:
    services.hub.entry(f"{name}@{version}")
    await asyncio.to_thread(services.hub.unload, name, version)
    return _describe(services, name, version, "unload")


@router.post("/models/{name}/{version}:reload", response_model=AdminResult, summary="Re-read files and reload")
async def reload(name: str, version: int, services: ServicesDep) -> AdminResult:
    services.hub.entry(f"{name}@{version}")
    await services.model_work(services.hub.reload, name, version)
    return _describe(services, name, version, "reload")


@router.post("/models/{name}/{version}:calibrate", response_model=AdminResult,
             summary="Fit the calibration on the holdout, write it to model.toml, reload")
async def calibrate(name: str, version: int, services: ServicesDep, method: CalibrationMethod = "platt") -> AdminResult:
    """Fits ``method`` on the version's held-out real samples against fresh fakes (held-out halves scored),
    writes ``[calibration]`` and DRS's ``logit_max`` into its model.toml, and reloads it."""
    from service.registry.calibrate import calibrate_version

    e = services.hub.entry(f"{name}@{version}")
    res = await services.model_work(partial(calibrate_version, e.path, method, device=services.hub.devices[0]))
    await services.model_work(services.hub.reload, name, version)
    result = _describe(services, name, version, "calibrate")
    result.calibration = {"method": res.calibration.method, **res.report._asdict(), "logit_max": res.logit_max,
                          "write_note": res.write_note}
    return result
