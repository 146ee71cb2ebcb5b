"""``GET /v1/models`` and ``GET /v1/models/{ref}`` show how a loaded version runs: ``runtime`` and ``notes``
(``LoadedModel.runtime`` / ``.notes``), null and [] for versions that are not loaded.

Models: the toy MLP ``gauss`` (vector output: stays contiguous), a broken copy of it (failed), and a copy of the conv
demo ``models/digits-dcgan`` (``auto`` gives it channels_last).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.api.conftest import serve
from tests.api.toy_registry import gauss

DIGITS = Path(__file__).resolve().parents[2] / "models" / "digits-dcgan"
ADMIN = {"authorization": "Bearer s3cret"}


def _registry(root: Path) -> Path:
    gauss(root)
    broken = gauss(root, name="broken")
    (broken / "generator.safetensors").write_bytes(b"corrupt")
    shutil.copytree(DIGITS, root / "digits-dcgan")
    return root


async def test_model_info_shows_runtime_and_notes_of_loaded_versions(tmp_path: Path) -> None:
    async with serve(_registry(tmp_path / "models"), tmp_path / "data", admin_token="s3cret") as (client, services):
        r = await client.get("/v1/models")
        assert r.status_code == 200  # (a NaN in a runtime record would be a 500: the JSON encoder refuses it)
        listed = {m["id"]: m for m in r.json()["models"]}

        conv = (await client.get("/v1/models/digits-dcgan")).json()
        assert conv == listed["digits-dcgan@1"]
        loaded = services.hub.get("digits-dcgan@1")[0]
        assert conv["runtime"] == loaded.runtime and conv["notes"] == list(loaded.notes)
        rt = conv["runtime"]
        assert rt["memory_format_setting"] == "auto" and rt["memory_format"] == "channels_last"
        assert "conv weights" in rt["memory_format_reason"] and rt["max_abs_logit_diff_channels_last"] < 1e-4
        assert rt["compile_setting"] is False and rt["compile"] is False
        assert any(n.startswith("memory_format auto: channels_last") for n in conv["notes"])

        mlp = (await client.get("/v1/models/gauss@1")).json()
        assert mlp["runtime"]["memory_format"] == "contiguous" and mlp["runtime"]["memory_format_setting"] == "auto"
        assert mlp["runtime"]["memory_format_reason"] == "output is not an image (C, H, W)"
        assert mlp["notes"] == []

        failed = listed["broken@1"]
        assert failed["state"] == "failed" and failed["runtime"] is None and failed["notes"] == []

        r = await client.post("/v1/admin/models/digits-dcgan/1:unload", headers=ADMIN)
        assert r.status_code == 200 and r.json()["model"]["runtime"] is None and r.json()["model"]["notes"] == []
        gone = (await client.get("/v1/models/digits-dcgan@1")).json()
        assert gone["state"] == "unloaded" and gone["runtime"] is None and gone["notes"] == []

        r = await client.post("/v1/admin/models/digits-dcgan/1:load", headers=ADMIN)
        assert r.status_code == 200
        assert r.json()["model"]["runtime"] == rt  # the same decision on a second load


async def test_openapi_documents_runtime_and_notes(tmp_path: Path) -> None:
    gauss(tmp_path / "models")
    async with serve(tmp_path / "models", tmp_path / "data") as (client, _):
        props = (await client.get("/openapi.json")).json()["components"]["schemas"]["ModelInfo"]["properties"]
        assert "runtime" in props and "notes" in props
        assert "memory_format" in props["runtime"]["description"]
