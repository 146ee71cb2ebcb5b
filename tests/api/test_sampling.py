"""Happy paths of the HTTP API: sampling in every format and diagnostics level, models, health, metrics, auth,
admin."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.api.deps import Services
from service.metrics import PrometheusSink
from tests.api.conftest import serve
from tests.api.toy_registry import build, gauss

API = tuple[httpx.AsyncClient, Services]


async def test_mh_array_response_follows_the_contract(api: API) -> None:
    client, _ = api
    r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 5, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "gauss@1" and body["sampler"] == "mh" and body["seed"] == 7
    assert body["n"] == 5 and body["steps"] == 50  # the model's [samplers.mh] steps
    assert body["output"] == "array" and body["shape"] == [1]
    assert len(body["samples"]) == 5 and all(len(s) == 1 for s in body["samples"])
    d = body["diagnostics"]
    assert d["proposals"] == 5 * 50 and 0 < d["acceptance_rate"] < 1 and d["exact"] is True
    assert d["calibrated"] is False and d["nonfinite"] == 0 and "chains" not in d
    assert set(body["timing"]) == {"queue_s", "compute_s", "total_s"}


@pytest.mark.parametrize("level", ["none", "summary", "chains", "traces"])
async def test_diagnostics_levels(api: API, level: str) -> None:
    client, _ = api
    r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 4, "steps": 40, "diagnostics": level})
    assert r.status_code == 200, r.text
    body = r.json()
    if level == "none":
        assert "diagnostics" not in body
        return
    d = body["diagnostics"]
    assert ("chains" in d) == (level in ("chains", "traces"))
    assert ("traces" in d) == (level == "traces")
    if level in ("chains", "traces"):
        assert [c["chain"] for c in d["chains"]] == [0, 1, 2, 3]
        assert all(c["distinct_states"] == c["accepted"] + 1 for c in d["chains"])
    if level == "traces":
        tr = d["traces"]
        assert tr["every"] == 1 and len(tr["logit"]) == 4 and len(tr["logit"][0]) == 41
        assert d["acceptance_curve"] and set(d["ess"]) >= {"logit", "energy"} and set(d["rhat"]) >= {"logit"}
        finals = [row[-1] for row in tr["logit"]]
        assert finals == pytest.approx([c["logit_final"] for c in d["chains"]])


async def test_seed_is_chosen_and_returned_and_reproduces(api: API) -> None:
    client, _ = api
    a = (await client.post("/v1/samples/mh", json={"model": "gauss", "n": 3})).json()
    b = (await client.post("/v1/samples/mh", json={"model": "gauss", "n": 3, "seed": a["seed"]})).json()
    assert 0 <= a["seed"] < 2**63 and a["samples"] == b["samples"]


async def test_npz_body(api: API) -> None:
    client, _ = api
    r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 3, "seed": 1},
                          headers={"accept": "application/x-npz"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npz"
    z = np.load(io.BytesIO(r.content))
    assert z["samples"].shape == (3, 1) and z["samples"].dtype == np.float32
    assert z["z"].shape == (3, 1) and z["logit_final"].shape == (3,)
    meta = json.loads(z["meta.json"].tobytes())
    assert meta["seed"] == 1 and "samples" not in meta and meta["diagnostics"]["proposals"] == 150
    j = (await client.post("/v1/samples/mh", json={"model": "gauss", "n": 3, "seed": 1})).json()
    assert np.array_equal(np.asarray(j["samples"], dtype=np.float32), z["samples"])


async def test_npz_meta_says_array_for_an_image_model_too(api: API) -> None:
    client, _ = api
    r = await client.post("/v1/samples/raw", json={"model": "image", "n": 2, "seed": 3},
                          headers={"accept": "application/x-npz"})
    z = np.load(io.BytesIO(r.content))
    assert z["samples"].dtype == np.float32 and z["samples"].shape == (2, 1, 4, 4)
    assert json.loads(z["meta.json"].tobytes())["output"] == "array"  # what the npz holds, not the PNG default


async def test_png_for_image_models_by_default(api: API) -> None:
    client, _ = api
    r = await client.post("/v1/samples/raw", json={"model": "image", "n": 2, "seed": 3})
    body = r.json()
    assert body["output"] == "png" and body["shape"] == [1, 4, 4]
    img = Image.open(io.BytesIO(base64.b64decode(body["samples"][0])))
    assert img.size == (4, 4) and img.mode == "L"
    arr = (await client.post("/v1/samples/raw", json={"model": "image", "n": 2, "seed": 3, "output": "array"})).json()
    x = np.asarray(arr["samples"][0][0])
    assert np.array_equal(np.asarray(img), np.round((x + 1) / 2 * 255).clip(0, 255).astype(np.uint8))


async def test_every_sampler_runs(api: API) -> None:
    client, _ = api
    for sampler in ("raw", "mh", "rep", "ddls", "drs", "sir"):
        r = await client.post(f"/v1/samples/{sampler}", json={"model": "gauss", "n": 3, "steps": 20, "seed": 1})
        assert r.status_code == 200, (sampler, r.text)
        assert all(v[0] is not None for v in r.json()["samples"])


async def test_nan_rows_are_rejected_not_returned(api: API) -> None:
    client, _ = api
    r = await client.post("/v1/samples/mh", json={"model": "nan", "n": 32, "steps": 60, "seed": 2,
                                                     "diagnostics": "chains"})
    assert r.status_code == 200
    body = r.json()
    assert body["diagnostics"]["nonfinite"] > 0
    assert all(s[0] is not None and s[0] <= 1.0 for s in body["samples"])  # G is NaN for z > 1


async def test_models_list_and_info(api: API) -> None:
    client, _ = api
    models = (await client.get("/v1/models")).json()["models"]
    assert {m["id"] for m in models} == {"gauss@1", "image@1", "failing@1", "nan@1", "onnx@1"}
    info = (await client.get("/v1/models/onnx@1")).json()
    assert info["state"] == "ready" and info["formats"] == {"generator": "onnx", "discriminator": "onnx"}
    assert info["samplers"]["rep"]["supported"] is False and "gradients" in info["samplers"]["rep"]["reason"]
    assert info["samplers"]["mh"]["supported"] is True
    g = (await client.get("/v1/models/gauss")).json()
    assert g["samplers"]["mh"]["default_steps"] == 50 and g["samplers"]["mh"]["options"] == {"init": ["generator", "real"]}
    assert (await client.get("/v1/models/nope")).status_code == 404


async def test_readyz_reports_failed_models_and_stays_ready(tmp_path: Path) -> None:
    root = tmp_path / "models"
    gauss(root)
    bad = gauss(root, name="broken")
    (bad / "generator.safetensors").write_bytes(b"corrupt")
    async with serve(root, tmp_path / "data") as (client, _):
        r = await client.get("/readyz")
        assert r.status_code == 200
        models = r.json()["models"]
        assert models["gauss@1"] == "ready" and models["broken@1"].startswith("failed: ")
        assert "generator.sha256" in models["broken@1"]
        r = await client.post("/v1/samples/mh", json={"model": "broken", "n": 1})
        assert r.status_code == 503 and "generator.sha256" in r.json()["error"]["message"]


async def test_a_broken_newest_version_falls_back_to_the_newest_that_loads(tmp_path: Path) -> None:
    root = tmp_path / "models"
    gauss(root)
    bad = gauss(root, version=2)
    (bad / "generator.safetensors").write_bytes(b"half-copied")
    async with serve(root, tmp_path / "data") as (client, _):
        r = await client.get("/readyz")
        models = r.json()["models"]
        assert r.status_code == 200 and models["gauss@1"] == "ready" and models["gauss@2"].startswith("failed: ")
        r = await client.post("/v1/samples/raw", json={"model": "gauss", "n": 2, "seed": 1})
        assert r.status_code == 200 and r.json()["model"] == "gauss@1"
        r = await client.post("/v1/samples/raw", json={"model": "gauss@2", "n": 2})
        assert r.status_code == 503 and "generator.sha256" in r.json()["error"]["message"]


async def test_readyz_follows_an_upgrade_by_load_and_unload(tmp_path: Path) -> None:
    """Load v2 and unload v1 (the documented upgrade without a restart): still ready, and v2 is what readiness and
    ``gansampler_model_ready`` report."""
    root = tmp_path / "models"
    gauss(root)
    async with serve(root, tmp_path / "data", admin_token="s3cret", sink=PrometheusSink()) as (client, _):
        auth = {"authorization": "Bearer s3cret"}
        gauss(root, version=2)  # copied in after startup
        assert (await client.post("/v1/admin/models/gauss/2:load", headers=auth)).status_code == 200
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["models"] == {"gauss@1": "ready", "gauss@2": "ready"}
        assert (await client.post("/v1/admin/models/gauss/1:unload", headers=auth)).status_code == 200
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json() == {"ready": True, "models": {"gauss@2": "ready"}, "draining": False}
        metrics = (await client.get("/metrics")).text
        assert 'gansampler_model_ready{model="gauss@2"} 1.0' in metrics and 'model="gauss@1"' not in metrics.split(
            "gansampler_model_ready", 1)[1].split("# HELP", 1)[0]
        assert (await client.post("/v1/admin/models/gauss/2:unload", headers=auth)).status_code == 200
        r = await client.get("/readyz")  # nothing left to serve: not ready
        assert r.status_code == 503 and r.json() == {"ready": False, "models": {}, "draining": False}


async def test_readyz_is_503_when_no_model_is_ready(tmp_path: Path) -> None:
    async with serve(tmp_path / "empty", tmp_path / "data") as (client, _):
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json() == {"ready": False, "models": {}, "draining": False}
        assert (await client.get("/livez")).status_code == 200


async def test_metrics_are_filled_by_the_engine(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path / "data", sink=PrometheusSink()) as (client, _):
        await client.post("/v1/samples/mh", json={"model": "gauss", "n": 4, "steps": 10})
        r = await client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        assert 'gansampler_mcmc_proposals_total{model="gauss@1",sampler="mh"} 40.0' in text
        assert 'gansampler_chain_steps_total{model="gauss@1",sampler="mh"} 40.0' in text  # n × steps, blocks or not
        assert 'gansampler_requests_total{route="/v1/samples/{sampler}",status="200"} 1.0' in text
        assert "gansampler_batch_chains" in text


async def test_api_keys(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path / "data", api_keys=("k1", "k2")) as (client, _):
        body = {"model": "gauss", "n": 1}
        r = await client.post("/v1/samples/raw", json=body)
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        assert (await client.post("/v1/samples/raw", json=body, headers={"authorization": "Bearer k3"})).status_code == 401
        assert (await client.post("/v1/samples/raw", json=body, headers={"authorization": "Bearer k2"})).status_code == 200
        assert (await client.get("/v1/models", headers={"x-api-key": "k1"})).status_code == 200
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.get("/readyz")).status_code == 200  # health needs no key


JSON = {"content-type": "application/json"}


async def test_without_a_key_the_answer_is_401_whatever_the_body(toy_models: Path, tmp_path: Path) -> None:
    """Authentication comes first: a request without a key learns nothing about the body checks (415, 413, 400,
    422) or the routes (404, 405); with the key, the same requests get those answers."""
    async with serve(toy_models, tmp_path / "data", api_keys=("k1",), max_body_bytes=256) as (client, _):
        bad = [
            ("POST", "/v1/samples/mh", {"content": b"model=gauss", "headers": {"content-type": "text/plain"}}, 415),
            ("POST", "/v1/samples/mh", {"content": b'{"model": "gauss", "n": ', "headers": JSON}, 400),
            ("POST", "/v1/samples/mh", {"content": b"{" + b" " * 300 + b"}", "headers": JSON}, 413),
            ("POST", "/v1/samples/mh", {"json": {"model": "gauss", "n": 0}}, 422),
            ("POST", "/v1/samples/nope", {"json": {"model": "gauss", "n": 1}}, 404),
            ("GET", "/v1/nothing-here", {}, 404),
            ("DELETE", "/v1/models", {}, 405),
        ]
        for method, path, kwargs, with_key in bad:
            r = await client.request(method, path, **kwargs)
            assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized", (path, r.text)
            assert r.headers["request-id"]
            headers = {**kwargs.get("headers", {}), "x-api-key": "k1"}
            r = await client.request(method, path, **{**kwargs, "headers": headers})
            assert r.status_code == with_key, (path, r.text)


async def test_admin_routes(tmp_path: Path) -> None:
    root = build(tmp_path / "models", failing=False)
    async with serve(root, tmp_path / "data", admin_token="s3cret") as (client, services):
        auth = {"authorization": "Bearer s3cret"}
        hub = services.hub
        before = hub.generation(hub.get("gauss@1")[0])
        assert (await client.post("/v1/admin/models/gauss/1:unload")).status_code == 401
        assert (await client.post("/v1/admin/models/gauss/1:unload", headers={"authorization": "Bearer x"})).status_code == 401
        r = await client.post("/v1/admin/models/gauss/1:unload", headers=auth)
        assert r.status_code == 200 and r.json()["model"]["state"] == "unloaded"
        assert (await client.post("/v1/samples/raw", json={"model": "gauss", "n": 1})).status_code == 503
        r = await client.post("/v1/admin/models/gauss/1:load", headers=auth)
        assert r.status_code == 200 and r.json()["model"]["state"] == "ready"
        r = await client.post("/v1/admin/models/gauss/1:load", headers=auth)
        assert r.status_code == 409 and r.json()["error"]["type"] == "conflict"
        assert (await client.post("/v1/admin/models/gauss/1:reload", headers=auth)).status_code == 200
        assert hub.generation(hub.get("gauss@1")[0]) != before  # new requests start a new pool
        assert (await client.post("/v1/admin/models/gauss/9:load", headers=auth)).status_code == 404
        r = await client.post("/v1/admin/models/image/1:calibrate", headers=auth)
        assert r.status_code == 200, r.text
        cal = r.json()
        assert cal["model"]["calibration"]["method"] == "platt" and 0 <= cal["calibration"]["auc"] <= 1
        assert cal["calibration"]["write_note"] is None  # model.toml edited in place
        r = await client.post("/v1/samples/raw", json={"model": "image", "n": 1})
        assert r.json()["diagnostics"]["calibrated"] is True


async def test_admin_is_401_without_a_configured_token(api: API, toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path / "d2") as (client, _):
        r = await client.post("/v1/admin/models/gauss/1:reload", headers={"authorization": "Bearer anything"})
        assert r.status_code == 401 and "GANSAMPLER_ADMIN_TOKEN" in r.json()["error"]["message"]


async def test_openapi_documents_the_contract(api: API) -> None:
    client, _ = api
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/v1/samples/{sampler}"]["post"]
    assert {"200", "404", "413", "422", "429", "503", "504"} <= set(post["responses"])
    assert "application/x-npz" in post["responses"]["200"]["content"]
    schemas = spec["components"]["schemas"]
    assert schemas["SampleRequest"]["additionalProperties"] is False
    assert schemas["SampleRequest"]["examples"] and schemas["SampleResponse"]["examples"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/models/{ref}", "/readyz",
                 "/v1/admin/models/{name}/{version}:calibrate"):
        assert path in spec["paths"], path
