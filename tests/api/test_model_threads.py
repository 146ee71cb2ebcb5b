"""Model loading and reloading run in a thread of their own that ends with the work (``Services.model_work``), so
that no pool thread keeps an OpenMP team beside the device worker's (``service.engine.threads``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from service.api.hub import ModelHub
from tests.api.conftest import serve

ADMIN = {"authorization": "Bearer admin-secret"}


async def test_startup_and_reload_load_in_threads_that_end(
    toy_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where: dict[str, threading.Thread] = {}
    start, reload = ModelHub.start, ModelHub.reload

    def spy_start(self: ModelHub, *a: Any, **k: Any) -> Any:
        where["start"] = threading.current_thread()
        return start(self, *a, **k)

    def spy_reload(self: ModelHub, *a: Any, **k: Any) -> Any:
        where["reload"] = threading.current_thread()
        return reload(self, *a, **k)

    monkeypatch.setattr(ModelHub, "start", spy_start)
    monkeypatch.setattr(ModelHub, "reload", spy_reload)
    async with serve(toy_models, tmp_path / "data", admin_token="admin-secret") as (client, services):
        models = (await client.get("/v1/models")).json()["models"]
        ref = next(m for m in models if m["state"] == "ready")
        r = await client.post(f"/v1/admin/models/{ref['name']}/{ref['version']}:reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        for what in ("start", "reload"):
            th = where[what]
            assert th is not threading.current_thread()
            th.join(timeout=10)
            assert not th.is_alive(), f"{what} ran in a thread that outlived it ({th.name})"
        assert services.compute_threads is not None
