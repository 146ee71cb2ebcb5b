"""``:reload`` with no gap in service: the loaded copy serves until the new one is ready; a failed reload keeps it."""

from __future__ import annotations

import asyncio
import threading
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.api.conftest import serve
from tests.api.toy_registry import gauss

AUTH = {"authorization": "Bearer s3cret"}
BODY = {"model": "gauss", "n": 3, "seed": 4, "steps": 5}
WAIT_S = 30


async def test_requests_during_a_reload_are_served_then_new_ones_use_the_new_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vdir = gauss(tmp_path / "models")
    async with serve(tmp_path / "models", tmp_path / "data", admin_token="s3cret") as (client, services):
        before = (await client.post("/v1/samples/mh", json=BODY)).json()
        reg = services.hub.primary
        reading, release = threading.Event(), threading.Event()
        real_read = reg.read

        def slow_read(name: str, version: int):  # type: ignore[no-untyped-def]
            reading.set()
            assert release.wait(WAIT_S)
            return real_read(name, version)

        monkeypatch.setattr(reg, "read", slow_read)
        manifest = tomllib.loads((vdir / "model.toml").read_text())
        manifest.setdefault("samplers", {})["mh"] = {"steps": 7}  # visible in the model's description
        (vdir / "model.toml").write_text(tomli_w.dumps(manifest))
        reload = asyncio.create_task(client.post("/v1/admin/models/gauss/1:reload", headers=AUTH))
        assert await asyncio.to_thread(reading.wait, WAIT_S)
        during = await client.post("/v1/samples/mh", json=BODY)  # the reload is reading the new files now
        assert during.status_code == 200, during.text
        assert during.json()["samples"] == before["samples"]
        assert (await client.get("/readyz")).status_code == 200
        release.set()
        r = await reload
        assert r.status_code == 200, r.text
        assert r.json()["model"]["state"] == "ready"
        info = (await client.get("/v1/models/gauss@1")).json()
        assert info["samplers"]["mh"]["default_steps"] == 7  # the new manifest serves
        no_steps = {k: v for k, v in BODY.items() if k != "steps"}
        assert (await client.post("/v1/samples/mh", json=no_steps)).json()["steps"] == 7


async def test_a_failed_reload_says_the_version_still_serves(tmp_path: Path) -> None:
    vdir = gauss(tmp_path / "models")
    async with serve(tmp_path / "models", tmp_path / "data", admin_token="s3cret") as (client, _):
        before = (await client.post("/v1/samples/mh", json=BODY)).json()
        (vdir / "generator.safetensors").write_bytes(b"corrupt")
        r = await client.post("/v1/admin/models/gauss/1:reload", headers=AUTH)
        assert r.status_code == 422
        assert "still serves its previous load" in r.json()["error"]["message"]
        after = await client.post("/v1/samples/mh", json=BODY)
        assert after.status_code == 200 and after.json()["samples"] == before["samples"]
        assert (await client.get("/readyz")).status_code == 200


async def test_an_unexpected_failure_is_a_500_whose_request_id_is_in_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import service.registry.calibrate as calibrate

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "/models/gauss/1/model.toml")

    monkeypatch.setattr(calibrate, "calibrate_version", read_only)
    gauss(tmp_path / "models")
    async with serve(tmp_path / "models", tmp_path / "data", admin_token="s3cret") as (client, _):
        r = await client.post("/v1/admin/models/gauss/1:calibrate", headers={**AUTH, "request-id": "rid-500"})
    assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
    assert "rid-500" in r.json()["error"]["message"]
    logged = [rec for rec in caplog.records if "rid-500" in rec.getMessage()]
    assert logged and logged[0].levelname == "ERROR" and logged[0].exc_info is not None
    assert "Permission denied" in logged[0].getMessage()


async def test_a_failing_warm_up_fails_a_load_and_leaves_a_reload_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.api.hub as hub_module

    gauss(tmp_path / "models")
    gauss(tmp_path / "models", name="other")
    async with serve(tmp_path / "models", tmp_path / "data", admin_token="s3cret") as (client, services):
        hub = services.hub
        hub.unload("other", 1)

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("device lost")

        monkeypatch.setattr(hub_module, "evaluate", broken)
        r = await client.post("/v1/admin/models/other/1:load", headers=AUTH)
        assert r.status_code == 422 and "warm-up failed: RuntimeError: device lost" in r.json()["error"]["message"]
        assert hub.entry("other@1").state == "unloaded" and "other@1" in hub.failures
        r = await client.post("/v1/admin/models/gauss/1:reload", headers=AUTH)
        assert r.status_code == 422 and "still serves its previous load" in r.json()["error"]["message"]
        assert "warm-up failed" in r.json()["error"]["message"]
        assert (await client.post("/v1/samples/mh", json=BODY)).status_code == 200
