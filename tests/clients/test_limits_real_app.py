"""``client.limits.get()`` against the real server app in process: the limits the server enforces, typed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytest.importorskip("service.api.app", reason="the server app is not installed")

from fastapi.testclient import TestClient
from gansampler import AsyncClient, Client, ServerLimits, UnprocessableEntityError

from service.api.app import create_app
from service.config import DEFAULT_MAX_STEPS, Settings
from service.engine.stats import NullSink
from tests.api.toy_registry import build


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("sdk-limit-models"), onnx=False)


def test_sync_limits_size_a_request_that_passes(toy_root: Path, tmp_path: Path) -> None:
    app = create_app(Settings(models_dir=toy_root, data_dir=tmp_path / "data", max_n=5, job_retention_s=0),
                     sink=NullSink())
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.portal is not None
        http.portal.call(app.state.services.wait_loaded)
        with Client("http://testserver", http_client=http, max_retries=0) as sdk:
            limits = sdk.limits.get()
            assert isinstance(limits, ServerLimits)
            assert limits.requests.max_n == 5 and limits.requests.max_steps == DEFAULT_MAX_STEPS
            assert limits.jobs.retention_s == 0
            batch = sdk.samples.create("gauss", sampler="mh", n=limits.requests.max_n, steps=2, output="array")
            assert batch.n == 5
            with pytest.raises(UnprocessableEntityError):
                sdk.samples.create("gauss", sampler="mh", n=limits.requests.max_n + 1, steps=2)


async def test_async_limits(toy_root: Path, tmp_path: Path) -> None:
    app = create_app(Settings(models_dir=toy_root, data_dir=tmp_path / "data", max_job_n=99), sink=NullSink())
    async with app.router.lifespan_context(app):
        await app.state.services.wait_loaded()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient("http://test", transport=transport, max_retries=0) as sdk:
            assert (await sdk.limits.get()).jobs.max_n == 99
