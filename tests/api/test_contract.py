"""The error contract of docs/api.md: status, type, param and message for each way a request can be wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.deps import Services
from service.config import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CHAIN_STEPS, DEFAULT_MAX_N, DEFAULT_MAX_STEPS
from tests.api.conftest import serve

OK = {"model": "gauss", "n": 2}


def raw_json(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


# (sampler, request kwargs for httpx, status, type, param, message or None (then only a fragment check))
CASES: list[tuple[str, str, dict[str, Any], int, str, str | None, str | None]] = [
    ("unknown model", "mh", {"json": {"model": "nope", "n": 1}}, 404, "not_found", "model",
     "'nope': no such model in the registry"),
    ("unknown version", "mh", {"json": {"model": "gauss@9", "n": 1}}, 404, "not_found", "model", None),
    ("unknown sampler", "hmc", {"json": OK}, 404, "not_found", "sampler",
     "unknown sampler 'hmc'; one of ['ddls', 'drs', 'mh', 'raw', 'rep', 'sir']"),
    ("n zero", "mh", {"json": {"model": "gauss", "n": 0}}, 422, "invalid_request", "n",
     "n: Input should be greater than or equal to 1, got 0"),
    ("n negative", "mh", {"json": {"model": "gauss", "n": -3}}, 422, "invalid_request", "n", None),
    ("n over limit", "mh", {"json": {"model": "gauss", "n": DEFAULT_MAX_N + 1}}, 422, "invalid_request", "n",
     f"n must be <= {DEFAULT_MAX_N}, got {DEFAULT_MAX_N + 1}"),
    ("n wrong type", "mh", {"json": {"model": "gauss", "n": "4"}}, 422, "invalid_request", "n",
     "n: Input should be a valid integer, got '4'"),
    ("n float", "mh", {"json": {"model": "gauss", "n": 2.0}}, 422, "invalid_request", "n", None),
    ("seed negative", "mh", {"json": {**OK, "seed": -1}}, 422, "invalid_request", "seed", None),
    ("seed too big", "mh", {"json": {**OK, "seed": 2**63}}, 422, "invalid_request", "seed", None),
    ("NaN param token", "rep", raw_json('{"model": "gauss", "n": 1, "params": {"step_size": NaN}}'), 422,
     "invalid_request", "params.step_size", "params.step_size: Input should be a finite number, got nan"),
    ("Infinity timeout token", "mh", raw_json('{"model": "gauss", "n": 1, "timeout_s": Infinity}'), 422,
     "invalid_request", "timeout_s", None),
    ("-Infinity option token", "drs", raw_json('{"model": "gauss", "n": 1, "options": {"logit_max": -Infinity}}'),
     422, "invalid_request", "options.logit_max",
     "logit_max must be a finite number in [-1000000.0, 1000000.0] or null, got -inf"),
    ("nested option", "mh", {"json": {**OK, "options": {"init": ["real"]}}}, 422, "invalid_request", "options.init",
     "options.init must be a string, number, boolean or null, got ['real']"),
    ("param out of range", "rep", {"json": {**OK, "params": {"step_size": 5.0}}}, 422, "invalid_request",
     "params.step_size", "step_size must be in [1e-06, 1.0], got 5.0"),
    ("unknown param", "rep", {"json": {**OK, "params": {"bogus": 1.0}}}, 422, "invalid_request", "params.bogus",
     "unknown param 'bogus' for sampler 'rep'; known: ['noise_scale', 'step_size']"),
    ("unknown option", "mh", {"json": {**OK, "options": {"bogus": 1}}}, 422, "invalid_request", "options.bogus",
     "unknown option 'bogus' for sampler 'mh'; known: ['init']"),
    ("sampler in the body", "mh", {"json": {**OK, "sampler": "mh"}}, 422, "invalid_request", "sampler",
     "unknown field 'sampler'; the sampler is part of the path: POST /v1/samples/{sampler} (only job bodies name it)"),
    ("bad option value", "mh", {"json": {**OK, "options": {"init": "magic"}}}, 422, "invalid_request",
     "options.init", None),
    ("steps over limit", "mh", {"json": {**OK, "steps": DEFAULT_MAX_STEPS + 1}}, 422, "invalid_request", "steps",
     f"steps must be <= {DEFAULT_MAX_STEPS}, got {DEFAULT_MAX_STEPS + 1}"),
    ("steps zero", "mh", {"json": {**OK, "steps": 0}}, 422, "invalid_request", "steps", None),
    ("n x steps over limit", "mh", {"json": {"model": "gauss", "n": DEFAULT_MAX_N, "steps": DEFAULT_MAX_STEPS}},
     413, "too_large", "steps",
     f"n × steps must be <= {DEFAULT_MAX_CHAIN_STEPS} (max_chain_steps), got {DEFAULT_MAX_N} × "
     f"{DEFAULT_MAX_STEPS} = {DEFAULT_MAX_N * DEFAULT_MAX_STEPS}"),
    ("oversized body", "mh", raw_json('{"model": "gauss", "n": 1, "options": {"x": "' + "a" * DEFAULT_MAX_BODY_BYTES
                                      + '"}}'), 413, "too_large", None, None),
    ("wrong content type", "mh", {"content": b"model=gauss&n=1",
                                  "headers": {"content-type": "application/x-www-form-urlencoded"}},
     415, "unsupported_media_type", None,
     "request body must be application/json, got content-type 'application/x-www-form-urlencoded'"),
    ("malformed JSON", "mh", raw_json('{"model": "gauss", "n": '), 400, "bad_request", None, None),
    ("duplicate name", "mh", raw_json('{"model": "gauss", "n": 5000, "n": 1}'), 400, "bad_request", None,
     "malformed JSON body: duplicate name 'n' in a JSON object (each name may appear once)"),
    ("duplicate nested name", "rep", raw_json('{"model": "gauss", "n": 1, "params": {"step_size": 0.1, '
                                              '"step_size": 0.2}}'), 400, "bad_request", None,
     "malformed JSON body: duplicate name 'step_size' in a JSON object (each name may appear once)"),
    ("empty body", "mh", raw_json(""), 400, "bad_request", None,
     "request body is required: a JSON object (see /docs for the fields)"),
    ("body is an array", "mh", raw_json("[1, 2]"), 400, "bad_request", None,
     "request body must be a JSON object, got an array: [1, 2]"),
    ("body is null", "mh", raw_json("null"), 400, "bad_request", None, "request body must be a JSON object, got null"),
    ("body not UTF-8", "mh", {"content": b'{"model": "gau\xff\xfe", "n": 1}',
                              "headers": {"content-type": "application/json"}}, 400, "bad_request", None,
     "malformed body: not UTF-8 JSON (send application/json text; content-encoding such as gzip is not supported)"),
    ("unknown field", "mh", {"json": {**OK, "temperature": 2}}, 422, "invalid_request", "temperature",
     "unknown field 'temperature'"),
    ("missing model", "mh", {"json": {"n": 2}}, 422, "invalid_request", "model", "model is required"),
    ("bad model ref", "mh", {"json": {"model": "../etc/passwd", "n": 1}}, 422, "invalid_request", "model", None),
    ("bad output", "mh", {"json": {**OK, "output": "jpeg"}}, 422, "invalid_request", "output", None),
    ("png of a vector model", "raw", {"json": {**OK, "output": "png"}}, 422, "invalid_request", "output",
     "output 'png' needs an image model, this model's output kind is 'vector'"),
    ("bad diagnostics", "mh", {"json": {**OK, "diagnostics": "all"}}, 422, "invalid_request", "diagnostics", None),
    ("timeout over limit", "mh", {"json": {**OK, "timeout_s": 10_000}}, 422, "invalid_request", "timeout_s", None),
    ("gradient sampler on ONNX", "rep", {"json": {"model": "onnx", "n": 1}}, 422, "invalid_request", "sampler",
     None),
]


@pytest.mark.parametrize(("case", "sampler", "kwargs", "status", "type_", "param", "message"), CASES,
                         ids=[c[0] for c in CASES])
async def test_error_contract(api: tuple[httpx.AsyncClient, Services], case: str, sampler: str,
                              kwargs: dict[str, Any], status: int, type_: str, param: str | None,
                              message: str | None) -> None:
    client, _ = api
    r = await client.post(f"/v1/samples/{sampler}", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "param"}
    assert body["error"]["type"] == type_
    assert body["error"]["param"] == param
    if message is not None:
        assert body["error"]["message"] == message
    assert r.headers["request-id"]


async def test_onnx_gradient_sampler_names_the_reason(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.post("/v1/samples/ddls", json={"model": "onnx", "n": 1})
    assert r.status_code == 422
    msg = r.json()["error"]["message"]
    assert "ddls" in msg and "gradients" in msg and "torch_export" in msg
    ok = await client.post("/v1/samples/mh", json={"model": "onnx", "n": 2, "steps": 5})
    assert ok.status_code == 200, ok.text


async def test_unloaded_model_is_503_without_retry_after(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = api
    services.hub.unload("image", 1)
    try:
        r = await client.post("/v1/samples/raw", json={"model": "image", "n": 1})
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "model_unavailable" and r.json()["error"]["param"] == "model"
        assert "unloaded" in r.json()["error"]["message"]
        assert "retry-after" not in r.headers  # an unload does not undo itself: no client should wait it out
    finally:
        services.hub.load("image", 1)


async def test_unknown_route_and_job_are_404_with_the_error_body(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    for path in ("/v1/nothing", "/v1/jobs/job_0123456789abcdef", "/v1/jobs/..%2f..%2fetc"):
        r = await client.get(path)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found", path


async def test_oversized_chunked_body_is_413(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "gauss", "n": 1, "options": {"x": "'
        for _ in range(DEFAULT_MAX_BODY_BYTES // 1000 + 1):
            yield b"a" * 1000
        yield b'"}}'

    r = await client.post("/v1/samples/mh", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "too_large"

    async def small() -> AsyncIterator[bytes]:
        yield b'{"model": "gauss", '
        yield b'"n": 2, "steps": 5}'

    r = await client.post("/v1/samples/mh", content=small(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


async def test_request_id_is_echoed(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.post("/v1/samples/nope", json=OK, headers={"x-request-id": "abc-123"})
    assert r.headers["request-id"] == "abc-123"
    r = await client.get("/livez", headers={"request-id": "xyz"})
    assert r.headers["request-id"] == "xyz" and r.json() == {"status": "ok"}


async def test_method_not_allowed_names_the_allowed_methods(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.delete("/livez")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"
    assert "GET" in r.headers["allow"]
    assert "HEAD" in r.headers["allow"]  # every GET route answers HEAD too


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/v1/models", "/v1/models/image", "/metrics"])
async def test_head_is_get_without_the_body(api: tuple[httpx.AsyncClient, Services], path: str) -> None:
    client, _ = api
    get = await client.get(path)
    head = await client.head(path, headers={"request-id": "h-1"})
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert get.content or path == "/metrics"  # this app's stats sink renders no metrics text
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["request-id"] == "h-1"
    if path != "/metrics":  # the metrics text changes between the two calls
        assert head.headers["content-length"] == get.headers["content-length"]


async def test_405_allow_lists_every_method_of_every_route_on_the_path(
        api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.put("/v1/jobs")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = await client.put("/v1/jobs/job_0123456789abcdef")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD"


async def test_head_on_a_post_route_is_405_naming_head(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.head("/v1/samples/raw")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.content == b""
    r = await client.head("/v1/nothing")
    assert r.status_code == 404


async def test_null_means_the_default_for_every_optional_field(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    base = {"model": "gauss", "n": 2, "seed": 5, "steps": 3}
    plain = await client.post("/v1/samples/mh", json=base)
    nulls = await client.post("/v1/samples/mh", json={**base, "params": None, "options": None, "diagnostics": None,
                                                      "output": None, "timeout_s": None})
    assert plain.status_code == nulls.status_code == 200, nulls.text
    assert nulls.json()["samples"] == plain.json()["samples"]
    assert nulls.json()["diagnostics"].keys() == plain.json()["diagnostics"].keys()


async def test_a_trailing_slash_is_served_not_redirected(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.post("/v1/samples/mh/", json={"model": "gauss", "n": 2, "seed": 5, "steps": 3})
    plain = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 2, "seed": 5, "steps": 3})
    assert r.status_code == 200 and r.json()["samples"] == plain.json()["samples"]
    r = await client.get("/v1/models/")
    assert r.status_code == 200 and r.json()["models"]
    assert (await client.get("/v1/nothing/")).status_code == 404


async def test_an_unknown_version_is_named_with_the_versions_there_are(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    for r in (await client.get("/v1/models/gauss@9"),
              await client.post("/v1/samples/raw", json={"model": "gauss@9", "n": 1})):
        assert r.status_code == 404 and "has no version 9 (has [1])" in r.json()["error"]["message"], r.text


async def test_limits_are_published_and_are_the_ones_enforced(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path / "data", max_n=7, max_job_n=70, max_queued_jobs=3) as (client, _):
        limits = (await client.get("/v1/limits")).json()
        assert limits["requests"]["max_n"] == 7 and limits["jobs"]["max_n"] == 70
        assert limits["jobs"]["max_queued_jobs"] == 3
        assert limits["requests"]["max_steps"] == DEFAULT_MAX_STEPS
        body = {"model": "gauss", "n": limits["requests"]["max_n"], "steps": 2}
        assert (await client.post("/v1/samples/mh", json=body)).status_code == 200
        r = await client.post("/v1/samples/mh", json={**body, "n": limits["requests"]["max_n"] + 1})
        assert r.status_code == 422 and r.json()["error"]["param"] == "n"


async def test_the_limits_example_in_the_docs_is_what_a_default_server_answers(
        api: tuple[httpx.AsyncClient, Services]) -> None:
    import json
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    example = re.search(r"## Limits.*?```json\n(.*?)```", text, re.S)
    assert example is not None
    client, _ = api
    assert (await client.get("/v1/limits")).json() == json.loads(example.group(1))


async def test_cors_is_off_by_default_and_answers_the_configured_origins(
        toy_models: Path, tmp_path: Path, api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.get("/v1/models", headers={"origin": "https://dash.example.com"})
    assert "access-control-allow-origin" not in r.headers
    async with serve(toy_models, tmp_path / "cors", cors_origins=("https://dash.example.com",)) as (cors, _):
        pre = await cors.options("/v1/samples/mh", headers={
            "origin": "https://dash.example.com", "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "POST" in pre.headers["access-control-allow-methods"]
        r = await cors.post("/v1/samples/mh", json={"model": "gauss", "n": 1, "steps": 2},
                            headers={"origin": "https://dash.example.com"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "request-id" in r.headers["access-control-expose-headers"]
        other = await cors.options("/v1/samples/mh", headers={
            "origin": "https://evil.example.com", "access-control-request-method": "POST"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


async def test_job_bodies_refuse_duplicate_names(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.post("/v1/jobs", content=b'{"sampler": "raw", "sampler": "mh", "model": "gauss", "n": 1}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 400 and "duplicate name 'sampler'" in r.json()["error"]["message"]
