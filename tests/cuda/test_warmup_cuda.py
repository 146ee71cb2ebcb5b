"""On a real GPU: a served model's default pools are probed at warm-up (before it is ready), and a request then
runs with the probed limit, probing nothing. Skipped without CUDA (run with ``python -m pytest -m cuda``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from service.api.app import create_app
from service.api.deps import Services
from service.config import Settings
from service.engine.stats import NullSink
from tests.api.toy_registry import gauss

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


async def test_default_pools_are_probed_on_the_gpu_at_warm_up(tmp_path: Path) -> None:
    root = tmp_path / "models"
    gauss(root)
    settings = Settings(models_dir=root, data_dir=tmp_path / "data", device="cuda:0")
    app = create_app(settings, sink=NullSink())
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await services.wait_loaded()
        model = services.hub.get("gauss")[0]
        assert model.device == "cuda:0"
        budget = services.engine.budget
        assert budget.measures("cuda:0")
        pools = services.hub.default_pools(model)
        assert {k.sampler for k, _ in pools} == {"raw", "mh", "rep", "ddls", "drs", "sir"}
        assert {k for k, _ in pools} <= set(budget.probes)  # probed before the model was ready
        assert all(budget.probes[k].rows >= 1 for k, _ in pools)
        probed = dict(budget.probes)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 8, "steps": 16, "seed": 5})
            assert r.status_code == 200, r.text
        assert budget.probes == probed  # the request found its limit: nothing probed on the request path
