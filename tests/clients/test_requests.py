"""Request building: paths, bodies (NOT_GIVEN omitted, None sent as null), headers, configuration, timeouts."""

from __future__ import annotations

import json

import httpx
import pytest
from gansampler import NOT_GIVEN, AsyncClient, Client, NotFoundError, NotGiven
from gansampler._base_client import RequestSpec, drop_not_given, timeout_for_server_deadline
from gansampler._constants import DEFAULT_BASE_URL, DEFAULT_TIMEOUT_S, TIMEOUT_MARGIN_S

from .conftest import MODEL_INFO, FakeServer, job_body, sample_body


def test_not_given_is_a_falsy_singleton_distinct_from_none() -> None:
    assert NotGiven() is NOT_GIVEN
    assert not NOT_GIVEN and NOT_GIVEN is not None
    assert repr(NOT_GIVEN) == "NOT_GIVEN"
    assert drop_not_given({"a": NOT_GIVEN, "b": None, "c": 0}) == {"b": None, "c": 0}


def test_sampling_request_omits_not_given_fields(client: Client, server: FakeServer) -> None:
    server.add("POST", "/v1/samples/rep", lambda r: httpx.Response(200, json=sample_body()))
    client.samples.create("toy@1", sampler="rep", n=3)
    request = server.requests[0]
    assert request.method == "POST" and str(request.url) == "http://test/v1/samples/rep"
    assert json.loads(request.content) == {"model": "toy@1", "n": 3}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("gansampler-python/")


def test_sampling_request_sends_none_as_null_and_all_fields(client: Client, server: FakeServer) -> None:
    server.add("POST", "/v1/samples/mh", lambda r: httpx.Response(200, json=sample_body()))
    client.samples.create(
        "toy",
        sampler="mh",
        n=4,
        seed=None,
        steps=100,
        params={"step_size": 0.1},
        options={"init": "real"},
        output="array",
        diagnostics="traces",
        timeout_s=12.5,
    )
    assert json.loads(server.requests[0].content) == {
        "model": "toy",
        "n": 4,
        "seed": None,
        "steps": 100,
        "params": {"step_size": 0.1},
        "options": {"init": "real"},
        "output": "array",
        "diagnostics": "traces",
        "timeout_s": 12.5,
    }


def test_job_request_carries_sampler_in_body(client: Client, server: FakeServer) -> None:
    server.add("POST", "/v1/jobs", lambda r: httpx.Response(202, json=job_body()))
    job = client.jobs.create("toy", sampler="sir", n=2, seed=3)
    assert json.loads(server.requests[0].content) == {"sampler": "sir", "model": "toy", "n": 2, "seed": 3}
    assert job.id == "job_1" and job.state == "queued"


def test_paths_are_percent_encoded_but_keep_at(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/models/toy@2", lambda r: httpx.Response(200, json=MODEL_INFO))
    client.models.get("toy@2")
    assert server.requests[-1].url.raw_path == b"/v1/models/toy@2"
    with pytest.raises(NotFoundError):
        client.models.get("a b/c")
    assert server.requests[-1].url.raw_path == b"/v1/models/a%20b%2Fc"


def test_npz_request_asks_for_npz(client: Client, server: FakeServer) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    meta = json.dumps({"seed": 5, "model": "toy@1"}).encode()
    np.savez(
        buffer,
        samples=np.zeros((2, 3), np.float32),
        z=np.ones((2, 8), np.float32),
        logit_final=np.zeros(2, np.float32),
        **{"meta.json": np.frombuffer(meta, dtype=np.uint8)},  # type: ignore[arg-type]
    )
    server.add(
        "POST",
        "/v1/samples/raw",
        lambda r: httpx.Response(200, content=buffer.getvalue(), headers={"content-type": "application/x-npz"}),
    )
    batch = client.samples.create_npz("toy", sampler="raw", n=2)
    assert server.requests[0].headers["accept"] == "application/x-npz"
    assert "output" not in json.loads(server.requests[0].content)
    assert batch.samples.shape == (2, 3) and batch.z is not None and batch.z.shape == (2, 8)
    assert batch.seed == 5 and batch.meta["model"] == "toy@1"


def test_env_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANSAMPLER_URL", "http://env-host:9000/")
    monkeypatch.setenv("GANSAMPLER_API_KEY", "env-key")
    client = Client()
    assert client.base_url == "http://env-host:9000" and client.api_key == "env-key"
    explicit = Client("http://arg:1", api_key="")
    assert explicit.base_url == "http://arg:1"
    assert "authorization" not in explicit.build_request(RequestSpec("GET", "/livez")).headers
    monkeypatch.delenv("GANSAMPLER_URL")
    assert Client().base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"base_url": "localhost:8000"}, "base_url"), ({"max_retries": -1}, "max_retries")]
)
def test_bad_configuration_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Client(**kwargs)


def test_timeouts_not_given_none_and_number() -> None:
    client = Client("http://x", timeout=20.0)
    default = client.build_request(RequestSpec("GET", "/"))
    assert default.extensions["timeout"]["read"] == 20.0
    none = client.build_request(RequestSpec("GET", "/", timeout=None))
    assert none.extensions["timeout"]["read"] is None  # None means no timeout, NOT_GIVEN means the client's
    three = client.build_request(RequestSpec("GET", "/", timeout=3.0))
    assert three.extensions["timeout"]["read"] == 3.0


def test_server_deadline_stretches_client_timeout(client: Client, server: FakeServer) -> None:
    server.add("POST", "/v1/samples/rep", lambda r: httpx.Response(200, json=sample_body()))
    client.samples.create("toy", sampler="rep", n=3, timeout_s=300)
    assert server.requests[0].extensions["timeout"]["read"] == 300 + TIMEOUT_MARGIN_S
    client.samples.create("toy", sampler="rep", n=3, timeout_s=1)
    assert server.requests[1].extensions["timeout"]["read"] == DEFAULT_TIMEOUT_S
    client.samples.create("toy", sampler="rep", n=3, timeout_s=300, timeout=5.0)  # explicit wins
    assert server.requests[2].extensions["timeout"]["read"] == 5.0
    base = httpx.Timeout(None)
    assert timeout_for_server_deadline(base, 10.0) is base


def test_models_list_and_get_parse(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/models", lambda r: httpx.Response(200, json={"models": [MODEL_INFO]}))
    models = client.models.list()
    assert [m.id for m in models] == ["toy@1"]
    rep = models[0].samplers["rep"]
    assert rep.params[0].name == "step_size" and rep.params[0].high == 1.0
    assert rep.options == {"proposal": ["l2mc", "prior"]}
    assert models[0].samplers["drs"].supported is False
    assert models[0].output is not None and models[0].output.kind == "image"


async def test_async_client_builds_the_same_request(aclient: AsyncClient, server: FakeServer) -> None:
    server.add("POST", "/v1/samples/rep", lambda r: httpx.Response(200, json=sample_body()))
    batch = await aclient.samples.create("toy@1", sampler="rep", n=3, seed=7)
    assert json.loads(server.requests[0].content) == {"model": "toy@1", "n": 3, "seed": 7}
    assert batch.diagnostics is not None and batch.diagnostics.acceptance_rate == 0.41
    server.add("GET", "/v1/models/toy", lambda r: httpx.Response(200, json=MODEL_INFO))
    assert (await aclient.models.get("toy")).version == 1
    await aclient.close()


def test_context_manager_closes_owned_client_only() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with Client("http://x", http_client=http):
        pass
    assert not http.is_closed
    with Client("http://x") as owned:
        pass
    assert owned._http.is_closed
