"""The SDK against the real server app (``service.api.app.create_app``) over a toy registry, in process.

Sync: ``Client`` over fastapi's ``TestClient`` (an httpx.Client whose transport runs the ASGI app in a thread).
Async: ``AsyncClient`` over ``httpx.ASGITransport``. These tests pin the SDK to what the server really sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("service.api.app", reason="the server app is not installed")

from fastapi import FastAPI
from fastapi.testclient import TestClient
from gansampler import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    InternalServerError,
    JobFailedError,
    NotFoundError,
    UnprocessableEntityError,
)

from service.api.app import create_app
from service.config import Settings
from service.engine.stats import NullSink
from tests.api.toy_arch import FAIL_BATCH
from tests.api.toy_registry import build

API_KEY = "sdk-test-key"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("sdk-models"), onnx=False)


def make_app(root: Path, data_dir: Path, **overrides: Any) -> FastAPI:
    return create_app(Settings(models_dir=root, data_dir=data_dir, **overrides), sink=NullSink())


@pytest.fixture(scope="module")
def client(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    app = make_app(toy_root, tmp_path_factory.mktemp("data"), api_keys=(API_KEY,))
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.portal is not None
        http.portal.call(app.state.services.wait_loaded)  # models loaded: an event, not a sleep
        with Client("http://testserver", api_key=API_KEY, http_client=http, max_retries=0) as sdk:
            yield sdk


@pytest.fixture
async def aclient(toy_root: Path, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    app = make_app(toy_root, tmp_path / "data")
    async with app.router.lifespan_context(app):
        await app.state.services.wait_loaded()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient("http://test", transport=transport, max_retries=0) as sdk:
            yield sdk


# --- sync -------------------------------------------------------------------------------------------------------


def test_health(client: Client) -> None:
    assert client.health.live()
    readiness = client.health.ready()
    assert readiness.ready and readiness.models["gauss@1"] == "ready"
    assert client.health.wait_ready(timeout=5).ready


def test_models(client: Client) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"gauss@1", "image@1"} <= set(models)
    gauss = client.models.get("gauss")
    assert gauss.id == "gauss@1" and gauss.state == "ready"
    assert gauss.output is not None and gauss.output.kind == "vector" and gauss.output.shape == [1]
    assert gauss.samplers["mh"].supported and gauss.samplers["mh"].default_steps == 50
    assert client.models.get("gauss@1").version == 1


def test_vector_samples_are_reproducible(client: Client) -> None:
    a = client.samples.create("gauss", sampler="mh", n=8, seed=3, steps=20)
    b = client.samples.create("gauss@1", sampler="mh", n=8, seed=3, steps=20, diagnostics="chains")
    assert a.model == "gauss@1" and a.output == "array" and a.shape == [1] and a.seed == 3 and a.steps == 20
    assert a.arrays.shape == (8, 1) and a.arrays.dtype == np.float32
    np.testing.assert_array_equal(a.arrays, b.arrays)
    assert a.diagnostics is not None and 0.0 <= (a.diagnostics.acceptance_rate or 0.0) <= 1.0
    assert b.diagnostics is not None and b.diagnostics.chains is not None and len(b.diagnostics.chains) == 8
    assert a.timing.total_s >= a.timing.compute_s >= 0


def test_server_picks_seed_when_not_given(client: Client) -> None:
    batch = client.samples.create("gauss", sampler="raw", n=2)
    again = client.samples.create("gauss", sampler="raw", n=2, seed=batch.seed)
    assert batch.samples == again.samples


def test_image_samples_and_save(client: Client, tmp_path: Path) -> None:
    batch = client.samples.create("image", sampler="rep", n=4, seed=1, steps=5, diagnostics="traces")
    assert batch.output == "png" and batch.shape == [1, 4, 4]
    assert [im.size for im in batch.images] == [(4, 4)] * 4
    assert batch.arrays.shape == (4, 4, 4)
    assert batch.diagnostics is not None and batch.diagnostics.traces is not None
    written = {p.name for p in batch.save(tmp_path)}
    assert {"grid.png", "diagnostics.json", "sample_0003.png"} <= written


def test_npz(client: Client, tmp_path: Path) -> None:
    npz = client.samples.create_npz("gauss", sampler="mh", n=5, seed=2, steps=10)
    assert npz.samples.shape == (5, 1) and npz.samples.dtype == np.float32
    assert npz.logit_final is not None and npz.logit_final.shape == (5,)
    assert npz.seed == 2
    batch = client.samples.create("gauss", sampler="mh", n=5, seed=2, steps=10)
    np.testing.assert_allclose(npz.samples, batch.arrays, rtol=1e-6)
    assert np.load(npz.save(tmp_path / "s.npz"))["samples"].shape == (5, 1)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": 2, "steps": 0}, "steps"),
        ({"n": 2, "params": {"bogus": 1.0}}, "params.bogus"),
        ({"n": 2, "seed": -1}, "seed"),
    ],
)
def test_validation_errors_name_the_field(client: Client, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        client.samples.create("gauss", sampler="mh", **kwargs)
    err = info.value
    assert (err.status_code, err.type, err.param) == (422, "invalid_request", param)
    assert err.request_id and err.message


def test_not_found_and_internal_errors(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        client.samples.create("no-such-model", sampler="mh", n=1)
    assert info.value.type == "not_found"
    with pytest.raises(NotFoundError):
        client.samples.create("gauss", sampler="nope", n=1)
    with pytest.raises(NotFoundError):
        client.jobs.status("job_does_not_exist")
    with pytest.raises(InternalServerError) as err:
        client.samples.create("failing", sampler="raw", n=FAIL_BATCH, seed=0)
    assert err.value.type == "internal_error" and err.value.request_id


def test_authentication(client: Client, toy_root: Path) -> None:
    http = client._http
    anonymous = Client("http://testserver", api_key="", http_client=http, max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        anonymous.models.list()
    assert info.value.type == "unauthorized"


def test_job_lifecycle(client: Client) -> None:
    job = client.jobs.create("gauss", sampler="mh", n=6, seed=4, steps=30)
    assert job.id and job.state in ("queued", "running", "succeeded")
    final = job.wait(poll_interval=0.02, timeout=60)
    assert final.state == "succeeded" and final.progress == 1.0
    batch = job.result()
    direct = client.samples.create("gauss", sampler="mh", n=6, seed=4, steps=30)
    np.testing.assert_array_equal(batch.arrays, direct.arrays)  # a job is the same request, run later
    npz = client.jobs.result_npz(job.id)
    np.testing.assert_allclose(npz.samples, batch.arrays, rtol=1e-6)
    events = list(client.jobs.events(job.id))
    assert events and events[-1].state == "succeeded"
    assert client.jobs.cancel(job.id).state == "succeeded"  # deleting a finished job returns it
    with pytest.raises(NotFoundError):
        client.jobs.status(job.id)


def test_result_too_early_then_cancel(client: Client) -> None:
    job = client.jobs.create("gauss", sampler="mh", n=4, steps=100_000)
    try:
        client.jobs.result(job.id)
    except ConflictError as err:
        assert err.type == "conflict" and err.status_code == 409
    else:  # only possible if the job already finished
        assert job.refresh().state == "succeeded"
    status = job.cancel()
    assert status.state in ("cancelled", "succeeded")
    final = job.wait(poll_interval=0.02, timeout=60)
    if final.state == "cancelled":
        with pytest.raises(JobFailedError, match="ended cancelled"):
            job.result()


# --- async ------------------------------------------------------------------------------------------------------


async def test_async_sampling_models_and_jobs(aclient: AsyncClient) -> None:
    assert "gauss@1" in {m.id for m in await aclient.models.list()}
    batch = await aclient.samples.create("gauss", sampler="rep", n=4, seed=9, steps=10)
    assert batch.arrays.shape == (4, 1) and batch.sampler == "rep"
    with pytest.raises(UnprocessableEntityError) as info:
        await aclient.samples.create("gauss", sampler="mh", n=2, options={"init": "sideways"})
    assert info.value.param is not None and info.value.param.startswith("options")
    job = await aclient.jobs.create("gauss", sampler="sir", n=3, seed=1, steps=16)
    events = [s async for s in aclient.jobs.events(job.id)]
    assert events[-1].state == "succeeded"
    result = await job.result(poll_interval=0.02)
    assert result.n == 3 and result.seed == 1
