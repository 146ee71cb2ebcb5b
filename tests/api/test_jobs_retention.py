"""Retention: finished jobs and their result files are deleted ``job_retention_s`` after they ended (at start and by
the periodic sweep); queued and running jobs never are; a succeeded job whose file is gone answers a clear 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.config import DEFAULT_JOB_RETENTION_S
from service.engine.jobs import MAX_SWEEP_INTERVAL_S, MIN_SWEEP_INTERVAL_S, sweep_interval
from service.engine.jobstore import RESULT_JSON, JobStore, iso
from tests.api.conftest import serve
from tests.api.test_concurrency import submitted, wait
from tests.api.test_jobs import JOB, finish
from tests.engine.helpers import Recorder

LONG = {**JOB, "n": 2, "steps": 100_000}  # runs until cancelled
AFTER_RETENTION = timedelta(seconds=DEFAULT_JOB_RETENTION_S + 3600)


async def test_sweep_deletes_finished_jobs_past_retention_and_never_live_ones(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    data = tmp_path / "data"
    async with serve(toy_models, data, observer=rec, max_running_jobs=1) as (client, services):
        done = (await client.post("/v1/jobs", json=JOB)).json()["id"]
        assert (await finish(client, done))[-1]["state"] == "succeeded"
        store = services.jobs.store
        assert (store.result_dir(done) / RESULT_JSON).exists()
        started = submitted(rec, 2)
        running = (await client.post("/v1/jobs", json=LONG)).json()["id"]
        await wait(started)
        queued = (await client.post("/v1/jobs", json=JOB)).json()["id"]
        cancelled = (await client.post("/v1/jobs", json=JOB)).json()["id"]
        await client.delete(f"/v1/jobs/{cancelled}")

        assert await services.jobs.sweep() == []  # nothing is old enough yet
        later = datetime.now(UTC) + AFTER_RETENTION
        assert sorted(await services.jobs.sweep(now=later)) == sorted([done, cancelled])
        assert (await client.get(f"/v1/jobs/{done}")).status_code == 404
        assert (await client.get(f"/v1/jobs/{done}/result")).status_code == 404
        assert not store.result_dir(done).exists()
        assert (await client.get(f"/v1/jobs/{running}")).json()["state"] == "running"
        assert (await client.get(f"/v1/jobs/{queued}")).json()["state"] == "queued"

        services.jobs.retention_s = 0  # 0 keeps finished jobs forever
        await client.delete(f"/v1/jobs/{running}")
        assert await services.jobs.sweep(now=later + AFTER_RETENTION * 100) == []
        assert (await client.get(f"/v1/jobs/{running}")).json()["state"] == "cancelled"
        await client.delete(f"/v1/jobs/{queued}")


async def test_start_sweeps_expired_jobs_and_orphaned_folders_and_keeps_old_queued_ones(
    toy_models: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    long_ago = iso(datetime.now(UTC) - AFTER_RETENTION)
    store = JobStore(data)
    store.create("job_00000000000000aa", JOB, 240)
    store.update("job_00000000000000aa", state="succeeded", created_at=long_ago, finished_at=long_ago)
    store.write_result("job_00000000000000aa", {"n": 8}, b"npz")
    store.create("job_00000000000000bb", JOB, 240)  # queued long ago: run, not deleted
    store.update("job_00000000000000bb", created_at=long_ago)
    store.create("job_00000000000000cc", JOB, 240)  # finished recently: kept
    store.update("job_00000000000000cc", state="failed", finished_at=iso(datetime.now(UTC)), error="boom")
    orphan = store.result_dir("job_00000000000000dd")  # a deletion cut short after the row went
    orphan.mkdir(parents=True)
    (orphan / RESULT_JSON).write_text("{}")
    store.close()
    async with serve(toy_models, data) as (client, _):
        assert (await client.get("/v1/jobs/job_00000000000000aa")).status_code == 404
        assert not (data / "jobs" / "job_00000000000000aa").exists() and not orphan.exists()
        assert (await client.get("/v1/jobs/job_00000000000000cc")).json()["state"] == "failed"
        assert (await finish(client, "job_00000000000000bb"))[-1]["state"] == "succeeded"


async def test_a_succeeded_job_whose_result_file_is_gone_answers_404_saying_so(toy_models: Path,
                                                                               tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path / "data") as (client, services):
        job_id = (await client.post("/v1/jobs", json=JOB)).json()["id"]
        assert (await finish(client, job_id))[-1]["state"] == "succeeded"
        (services.jobs.store.result_dir(job_id) / RESULT_JSON).unlink()
        r = await client.get(f"/v1/jobs/{job_id}/result")
        err = r.json()["error"]
        assert r.status_code == 404 and err["type"] == "not_found"
        assert err["message"] == (f"job {job_id} succeeded but its result file result.json is missing from the "
                                  f"server's data dir; delete the job (DELETE /v1/jobs/{job_id}) and run it again")
        npz = await client.get(f"/v1/jobs/{job_id}/result", headers={"accept": "application/x-npz"})
        assert npz.status_code == 200  # the other file is still there
        assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 200


def test_sweep_interval_follows_retention_within_bounds() -> None:
    assert sweep_interval(DEFAULT_JOB_RETENTION_S) == MAX_SWEEP_INTERVAL_S
    assert sweep_interval(60) == 15
    assert sweep_interval(0.1) == MIN_SWEEP_INTERVAL_S


async def test_the_retention_setting_reaches_the_job_manager(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path / "data", job_retention_s=60) as (_, services):
        assert services.jobs.retention_s == 60
