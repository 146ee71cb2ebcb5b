"""End to end: ``gansampler-server serve`` as a real uvicorn process on a free loopback port, over a toy registry,
sampled with httpx (concurrent requests, npz, jobs, graceful shutdown)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/e2e has no __init__.py
    sys.path.insert(0, str(ROOT))

from tests.api.toy_registry import build  # noqa: E402
from tests.e2e.live_server import serve_process  # noqa: E402

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("e2e")
    models = build(tmp / "models", failing=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GANSAMPLER_ADMIN_TOKEN": "e2e"}
    with serve_process(models, tmp / "data", env, ROOT, START_TIMEOUT_S, STOP_TIMEOUT_S) as (url, proc):
        yield url
    assert proc.returncode == 0, proc.stdout.read().decode() if proc.stdout else ""


def test_samples_over_real_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=REQUEST_TIMEOUT_S) as c:
        r = c.post("/v1/samples/mh", json={"model": "gauss", "n": 4, "seed": 3})
        assert r.status_code == 200 and r.headers["request-id"]
        body = r.json()
        assert body["model"] == "gauss@1" and len(body["samples"]) == 4
        npz = c.post("/v1/samples/mh", json={"model": "gauss", "n": 4, "seed": 3},
                     headers={"accept": "application/x-npz"})
        assert np.array_equal(np.load(io.BytesIO(npz.content))["samples"],
                              np.asarray(body["samples"], dtype=np.float32))
        assert c.get("/v1/models").status_code == 200
        assert "gansampler_requests_total" in c.get("/metrics").text
        bad = c.post("/v1/samples/mh", json={"model": "gauss", "n": 0})
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "n"


def test_concurrent_clients_get_their_own_reproducible_samples(server: str) -> None:
    def one(seed: int) -> list[list[float]]:
        with httpx.Client(base_url=server, timeout=REQUEST_TIMEOUT_S) as c:
            r = c.post("/v1/samples/mh", json={"model": "gauss", "n": 3, "seed": seed, "steps": 100})
            assert r.status_code == 200, r.text
            return r.json()["samples"]  # type: ignore[no-any-return]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, [s % 4 for s in range(32)]))
    for i, res in enumerate(results):
        assert res == results[i % 4]


def test_job_over_real_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=REQUEST_TIMEOUT_S) as c:
        job = c.post("/v1/jobs", json={"sampler": "sir", "model": "gauss", "n": 16, "steps": 32}).json()
        with c.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
            states = [line for line in events.iter_lines() if line.startswith("data: ")]
        assert '"state": "succeeded"' in states[-1]
        result = c.get(f"/v1/jobs/{job['id']}/result").json()
        assert len(result["samples"]) == 16 and "ess" in result["diagnostics"]["sampler"]
