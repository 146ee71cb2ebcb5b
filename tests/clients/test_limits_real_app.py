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


def test_cli_limits_prints_requests_and_jobs_side_by_side(toy_root: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gansampler.cli import main

    app = create_app(Settings(models_dir=toy_root, data_dir=tmp_path / "data", max_n=5), sink=NullSink())
    with TestClient(app, raise_server_exceptions=False) as http:
        argv = ["limits", "--url", "http://testserver", "--max-retries", "0"]
        assert main(argv, transport=http._transport) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == ["LIMIT", "REQUESTS", "JOBS"]
        rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
        assert rows["max_n"] == ["5", "65,536"] and rows["max_queued_jobs"] == ["-", "1,000"]
        assert main([*argv, "--json"], transport=http._transport) == 0
        assert json.loads(capsys.readouterr().out)["requests"]["max_n"] == 5
