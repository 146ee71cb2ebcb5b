"""Jobs: create, progress events, result, cancellation, deletion, limits, and persistence across restarts."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from service.engine.jobstore import JobStore
from tests.api.conftest import serve
from tests.api.test_concurrency import submitted, wait
from tests.engine.helpers import Recorder

JOB = {"sampler": "mh", "model": "gauss", "n": 8, "steps": 30, "seed": 5}


def sse(text: str) -> list[dict[str, Any]]:
    """The data of every ``event: progress`` in a text/event-stream body."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0] == "event: progress", block
        out.append(json.loads(lines[1].removeprefix("data: ")))
    return out


async def finish(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    """Follow the job's events to its terminal state."""
    r = await client.get(f"/v1/jobs/{job_id}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return sse(r.text)


async def test_job_runs_to_a_result_with_progress_events(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path) as (client, _):
        r = await client.post("/v1/jobs", json=JOB)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["id"].startswith("job_") and job["state"] in ("queued", "running")
        assert job["steps_total"] == 8 * 30 and job["request"]["seed"] == 5
        events = await finish(client, job["id"])
        assert events[-1]["state"] == "succeeded" and events[-1]["progress"] == 1.0
        assert events[-1]["finished_at"] is not None
        result = (await client.get(f"/v1/jobs/{job['id']}/result")).json()
        assert result["n"] == 8 and len(result["samples"]) == 8 and result["diagnostics"]["proposals"] == 240
        same = (await client.post("/v1/samples/mh", json={k: v for k, v in JOB.items() if k != "sampler"})).json()
        assert same["samples"] == result["samples"]  # jobs run the same chains as requests
        npz = await client.get(f"/v1/jobs/{job['id']}/result", headers={"accept": "application/x-npz"})
        assert np.load(io.BytesIO(npz.content))["samples"].shape == (8, 1)


async def test_result_bytes_are_limited_per_request_and_per_job_with_the_setting_named(toy_models: Path,
                                                                                      tmp_path: Path) -> None:
    """A model with large samples gets a 413 naming how many fit, before any chain runs (image: 1x4x4 float32 =
    64 bytes a sample); jobs have their own byte and chain-step limits, named as such."""
    async with serve(toy_models, tmp_path, max_result_bytes=200, max_job_result_bytes=640,
                     max_job_chain_steps=100) as (client, _):
        ok = await client.post("/v1/samples/raw", json={"model": "image", "n": 3, "output": "array"})
        assert ok.status_code == 200
        r = await client.post("/v1/samples/raw", json={"model": "image", "n": 4})
        err = r.json()["error"]
        assert r.status_code == 413 and err["param"] == "n"
        assert err["message"].startswith("n × sample size must be <= 200 bytes (max_result_bytes), got 4 × 64 bytes")
        assert "at most 3 samples of image@1 per request" in err["message"]
        assert (await client.post("/v1/jobs", json={"sampler": "raw", "model": "image", "n": 10})).status_code == 202
        r = await client.post("/v1/jobs", json={"sampler": "raw", "model": "image", "n": 11})
        assert r.status_code == 413 and "(max_job_result_bytes)" in r.json()["error"]["message"]
        r = await client.post("/v1/jobs", json={"sampler": "mh", "model": "gauss", "n": 2, "steps": 51})
        assert r.status_code == 413 and "(max_job_chain_steps)" in r.json()["error"]["message"]


async def test_jobs_take_larger_n_than_requests_and_have_their_own_limits(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path, max_n=4, max_job_n=16) as (client, _):
        assert (await client.post("/v1/samples/raw", json={"model": "gauss", "n": 8})).status_code == 422
        r = await client.post("/v1/jobs", json={"sampler": "raw", "model": "gauss", "n": 8})
        assert r.status_code == 202
        r2 = await client.post("/v1/jobs", json={"sampler": "raw", "model": "gauss", "n": 17})
        assert r2.status_code == 422 and r2.json()["error"]["message"] == "n must be <= 16, got 17"
        r3 = await client.post("/v1/jobs", json={"sampler": "hmc", "model": "gauss", "n": 1})
        assert r3.status_code == 422 and r3.json()["error"]["param"] == "sampler"
        r4 = await client.post("/v1/jobs", json={"sampler": "mh", "model": "nope", "n": 1})
        assert r4.status_code == 404
        assert (await finish(client, r.json()["id"]))[-1]["state"] == "succeeded"


async def test_cancel_a_running_job_then_delete_it(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec) as (client, _):
        started = submitted(rec, 1)
        job = (await client.post("/v1/jobs", json={**JOB, "n": 2, "steps": 100_000})).json()
        await wait(started)  # the job's chains are in the engine
        early = await client.get(f"/v1/jobs/{job['id']}/result")
        assert early.status_code == 409 and early.json()["error"]["type"] == "conflict"
        r = await client.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        events = await finish(client, job["id"])
        assert events[-1]["state"] == "cancelled" and events[-1]["progress"] < 1
        r = await client.delete(f"/v1/jobs/{job['id']}")  # finished: deleted
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert (await client.get(f"/v1/jobs/{job['id']}")).status_code == 404


async def test_finished_results_survive_a_restart_and_jobs_a_crash_stopped_run_again(
    toy_models: Path, tmp_path: Path
) -> None:
    """A process that died mid-job leaves 'running' rows behind: each runs again from its start (the same result
    as an uninterrupted run) until it was started job_max_attempts times, then it ends interrupted."""
    data = tmp_path / "data"
    async with serve(toy_models, data) as (client, _):
        done = (await client.post("/v1/jobs", json=JOB)).json()
        assert (await finish(client, done["id"]))[-1]["state"] == "succeeded"
        assert (await client.get(f"/v1/jobs/{done['id']}")).json()["attempts"] == 1
        before = (await client.get(f"/v1/jobs/{done['id']}/result")).json()
    store = JobStore(data)
    for job_id, attempts in (("job_00000000000000aa", 1), ("job_00000000000000cc", 2)):
        store.create(job_id, {**JOB}, 240)
        store.update(job_id, state="running", steps_done=100, attempts=attempts)
    store.create("job_00000000000000bb", {**JOB, "seed": 9}, 240)  # queued, never started
    store.close()
    async with serve(toy_models, data, job_max_attempts=2) as (client, _):
        after = (await client.get(f"/v1/jobs/{done['id']}/result")).json()
        assert after == before
        again = await finish(client, "job_00000000000000aa")
        assert again[-1]["state"] == "succeeded" and again[-1]["attempts"] == 2
        assert (await client.get("/v1/jobs/job_00000000000000aa/result")).json()["samples"] == before["samples"]
        lost = (await client.get("/v1/jobs/job_00000000000000cc")).json()
        assert lost["state"] == "interrupted" and lost["finished_at"] is not None and lost["attempts"] == 2
        assert lost["error"].endswith("2 time(s): not started again (job_max_attempts=2)")
        assert (await client.get("/v1/jobs/job_00000000000000cc/result")).status_code == 409
        queued = await finish(client, "job_00000000000000bb")
        assert queued[-1]["state"] == "succeeded" and queued[-1]["attempts"] == 1


async def test_a_job_running_at_shutdown_is_queued_again_and_runs_after_the_restart(
    toy_models: Path, tmp_path: Path
) -> None:
    rec = Recorder()
    data = tmp_path / "data"
    async with serve(toy_models, data, observer=rec) as (client, _):
        started = submitted(rec, 1)
        job = (await client.post("/v1/jobs", json={**JOB, "steps": 100_000})).json()
        await wait(started)
        assert (await client.get(f"/v1/jobs/{job['id']}")).json()["attempts"] == 1
    store = JobStore(data)
    row = store.get(job["id"])
    store.close()
    assert row is not None and (row["state"], row["steps_done"], row["attempts"]) == ("queued", 0, 0)
    rec = Recorder()
    async with serve(toy_models, data, observer=rec, job_max_attempts=1) as (client, _):
        started = submitted(rec, 1)
        await wait(started)  # runs again, though one attempt is allowed: a shutdown is not the job's fault
        j = (await client.get(f"/v1/jobs/{job['id']}")).json()
        assert (j["state"], j["attempts"], j["finished_at"]) == ("running", 1, None)
        await client.delete(f"/v1/jobs/{job['id']}")


async def test_jobs_do_not_starve_requests(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, max_batch_chains=8) as (client, _):
        started = submitted(rec, 1)
        job = (await client.post("/v1/jobs", json={**JOB, "n": 64, "steps": 2000})).json()
        await wait(started)
        r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 4, "steps": 20})
        assert r.status_code == 200
        assert (await client.get(f"/v1/jobs/{job['id']}")).json()["state"] == "running"
        assert max(rec.rows()) <= 8
        await client.delete(f"/v1/jobs/{job['id']}")


async def test_many_jobs_queue_and_all_finish(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path, max_running_jobs=1) as (client, _):
        ids = [(await client.post("/v1/jobs", json={**JOB, "seed": s, "steps": 5})).json()["id"] for s in range(4)]
        finals = await asyncio.gather(*(finish(client, i) for i in ids))
        assert all(f[-1]["state"] == "succeeded" for f in finals)
