"""Fixtures: a toy registry built once per session, and apps served in-process over httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from service.api.deps import Services
from service.config import Settings
from service.engine.stats import NullSink, StatsSink
from service.engine.worker import EngineObserver
from tests.api.toy_registry import build


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("models"), onnx=True)


@asynccontextmanager
async def running_app(
    models_dir: Path, data_dir: Path, observer: EngineObserver | None = None, sink: StatsSink | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[FastAPI, Services]]:
    """An app over ``models_dir`` with its lifespan running and models loaded; yields (app, services)."""
    settings = Settings(models_dir=models_dir, data_dir=data_dir, **overrides)
    app = create_app(settings, sink=sink if sink is not None else NullSink(), observer=observer)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await services.wait_loaded()
        yield app, services


@asynccontextmanager
async def serve(
    models_dir: Path, data_dir: Path, observer: EngineObserver | None = None, sink: StatsSink | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """:func:`running_app` with an httpx client over its ASGI transport; yields (client, services)."""
    async with running_app(models_dir, data_dir, observer, sink, **overrides) as (app, services):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, services


@pytest.fixture
async def api(toy_models: Path, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    async with serve(toy_models, tmp_path / "data", admin_token="admin-secret") as pair:
        yield pair
