"""The SDK's job listing, the queued-jobs cap and results that never come, against the real server app in process
(sync ``Client`` over fastapi's TestClient, ``AsyncClient`` over httpx's ASGI transport)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("service.api.app", reason="the server app is not installed")

from fastapi.testclient import TestClient
from gansampler import (
    AsyncClient,
    Client,
    ConflictError,
    JobFailedError,
    RateLimitError,
    UnprocessableEntityError,
)

from service.api.app import create_app
from service.config import Settings
from service.engine.stats import NullSink
from tests.api.test_concurrency import submitted
from tests.api.toy_registry import build
from tests.engine.helpers import GATE_TIMEOUT_S, Recorder

SHORT: dict[str, Any] = {"sampler": "mh", "n": 4, "steps": 5}
LONG: dict[str, Any] = {"sampler": "mh", "n": 2, "steps": 100_000}  # runs until cancelled


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("sdk-job-models"), onnx=False)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(toy_root: Path, tmp_path: Path, recorder: Recorder) -> Iterator[Client]:
    settings = Settings(models_dir=toy_root, data_dir=tmp_path / "data", max_running_jobs=1, max_queued_jobs=2)
    app = create_app(settings, sink=NullSink(), observer=recorder)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.portal is not None
        http.portal.call(app.state.services.wait_loaded)
        with Client("http://testserver", http_client=http, max_retries=0) as sdk:
            yield sdk


def test_list_pages_and_list_all(client: Client) -> None:
    ids = []
    for seed in range(3):
        job = client.jobs.create("gauss", seed=seed, **SHORT)
        assert job.wait(poll_interval=0.01).state == "succeeded"
        ids.append(job.id)
    page = client.jobs.list(limit=2)
    assert [j.id for j in page.jobs] == ids[:0:-1] and page.next is not None
    assert [j.id for j in client.jobs.list(limit=2, cursor=page.next).jobs] == ids[:1]
    assert [j.id for j in client.jobs.list_all(state=["succeeded", "failed"], page_size=1)] == ids[::-1]
    assert client.jobs.list(state="queued").jobs == []
    with pytest.raises(UnprocessableEntityError) as exc:
        client.jobs.list(state="finished")
    assert exc.value.param == "state" and "got 'finished'" in exc.value.message


def test_the_queued_cap_raises_rate_limit_error_naming_the_setting(client: Client, recorder: Recorder) -> None:
    started = submitted(recorder, 1)
    running = client.jobs.create("gauss", **LONG)
    assert started.wait(GATE_TIMEOUT_S)
    queued = [client.jobs.create("gauss", seed=s, **SHORT) for s in (1, 2)]
    with pytest.raises(RateLimitError) as exc:
        client.jobs.create("gauss", **SHORT)
    assert "the limit is max_queued_jobs=2" in exc.value.message and exc.value.status_code == 429
    for job in (*queued, running):
        job.cancel()
    assert {j.state for j in client.jobs.list_all()} == {"cancelled"}


def test_a_cancelled_jobs_result_says_it_never_comes(client: Client, recorder: Recorder) -> None:
    started = submitted(recorder, 1)
    job = client.jobs.create("gauss", **LONG)
    assert started.wait(GATE_TIMEOUT_S)
    job.cancel()
    with pytest.raises(ConflictError) as exc:
        client.jobs.result(job.id)
    assert "it has no result and never will" in exc.value.message
    with pytest.raises(JobFailedError):
        job.result()


async def test_async_list(toy_root: Path, tmp_path: Path) -> None:
    app = create_app(Settings(models_dir=toy_root, data_dir=tmp_path / "data"), sink=NullSink())
    async with app.router.lifespan_context(app):
        await app.state.services.wait_loaded()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient("http://test", transport=transport, max_retries=0) as sdk:
            job = await sdk.jobs.create("gauss", **SHORT)
            assert (await job.wait(poll_interval=0.01)).state == "succeeded"
            page = await sdk.jobs.list(state="succeeded")
            assert [j.id for j in page.jobs] == [job.id] and page.next is None
            assert page.jobs[0].steps_done == page.jobs[0].steps_total == 20
            assert [j.id async for j in sdk.jobs.list_all()] == [job.id]
