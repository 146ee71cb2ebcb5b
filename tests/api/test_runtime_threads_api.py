"""A model's ``[runtime] threads`` reaches the engine: its pool steps run on that many torch threads, other models'
on the process default, and ``GET /v1/models/{ref}`` reports it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from service.api.app import create_app
from service.api.deps import Services
from service.config import Settings
from service.engine.stats import NullSink
from service.engine.worker import EngineObserver, StepEvent
from tests.api.toy_registry import gauss
from tests.registry.helpers import with_runtime


class ThreadsSeen(EngineObserver):
    """Records, per model, the torch thread count the worker steps with."""

    def __init__(self) -> None:
        self.seen: dict[str, set[int]] = {}

    def on_step(self, event: StepEvent) -> None:
        self.seen.setdefault(event.key.model, set()).add(torch.get_num_threads())


async def test_a_models_steps_run_on_its_thread_count(tmp_path: Path) -> None:
    root = tmp_path / "models"
    with_runtime(gauss(root, name="single"), {"threads": 1})
    gauss(root, name="default")
    default = torch.get_num_threads()
    if default == 1:
        pytest.skip("torch runs on one thread here: the settings cannot be told apart")
    seen = ThreadsSeen()
    app = create_app(Settings(models_dir=root, data_dir=tmp_path / "data"), sink=NullSink(), observer=seen)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await services.wait_loaded()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for model in ("single", "default", "single"):
                r = await client.post("/v1/samples/mh", json={"model": model, "n": 4, "steps": 8, "seed": 3})
                assert r.status_code == 200, r.text
            info = (await client.get("/v1/models/single")).json()
            assert info["runtime"]["threads"] == 1
            assert (await client.get("/v1/models/default")).json()["runtime"]["threads"] is None
    assert seen.seen == {"single@1": {1}, "default@1": {default}}
    assert torch.get_num_threads() == default
