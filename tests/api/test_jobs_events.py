"""The events stream's keep-alive comments, ``id:`` and ``retry:`` fields; and how jobs end: a job's own timeout_s
(a warning, no traceback), a succeeded job's counters, the result of a job that ended without one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from service.api.routes.jobs import SSE_HEARTBEAT, SSE_RETRY_MS, event_stream
from tests.api.conftest import serve
from tests.api.test_concurrency import T, submitted, wait
from tests.api.test_jobs import JOB, finish, sse
from tests.engine.helpers import Recorder

LONG = {**JOB, "n": 2, "steps": 100_000}  # runs until cancelled
HEARTBEAT_S = 0.02


async def test_a_waiting_job_stream_sends_keep_alive_comments_and_ids(toy_models: Path, tmp_path: Path) -> None:
    """A job queued behind a running one does not change: its stream sends comments at the heartbeat period."""
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, max_running_jobs=1,
                     job_heartbeat_s=HEARTBEAT_S) as (client, services):
        started = submitted(rec, 1)
        running = (await client.post("/v1/jobs", json=LONG)).json()["id"]
        await wait(started)
        queued = (await client.post("/v1/jobs", json=JOB)).json()["id"]
        stream = event_stream(services, queued)
        chunks = [await asyncio.wait_for(anext(stream), T) for _ in range(3)]
        await stream.aclose()
        first = chunks[0].decode()
        assert first.startswith("event: progress\ndata: {") and first.endswith(f"\nid: 1\nretry: {SSE_RETRY_MS}\n\n")
        assert sse(first)[0]["state"] == "queued"
        assert chunks[1:] == [SSE_HEARTBEAT, SSE_HEARTBEAT] == [b": keep-alive\n\n"] * 2

        await client.delete(f"/v1/jobs/{queued}")
        body = (await client.get(f"/v1/jobs/{queued}/events")).text
        assert body.endswith("\nid: 1\nretry: 2000\n\n") and sse(body)[-1]["state"] == "cancelled"
        await client.delete(f"/v1/jobs/{running}")


async def test_a_state_change_reaches_the_stream_at_once_and_an_idle_stream_reads_nothing(
    toy_models: Path, tmp_path: Path
) -> None:
    """Streams wake when a job changes, not on a timer: with a progress interval and heartbeat of an hour, the
    cancellation of a queued job still ends its stream at once, and a waiting stream does not read the store."""
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, max_running_jobs=1, job_progress_interval_s=3600,
                     job_heartbeat_s=3600) as (client, services):
        started = submitted(rec, 1)
        running = (await client.post("/v1/jobs", json=LONG)).json()["id"]
        await wait(started)
        queued = (await client.post("/v1/jobs", json=JOB)).json()["id"]
        stream = services.jobs.events(queued, heartbeat_s=3600)
        first = await asyncio.wait_for(anext(stream), T)
        assert first is not None and first["state"] == "queued"
        reads = 0
        store_get = services.jobs.store.get

        def counted_get(job_id: str) -> object:
            nonlocal reads
            reads += 1
            return store_get(job_id)

        services.jobs.store.get = counted_get  # type: ignore[method-assign]
        pending = asyncio.ensure_future(anext(stream))
        for _ in range(50):  # the stream's task gets the loop many times over, with nothing to wake it
            await asyncio.sleep(0)
        assert not pending.done() and reads == 0
        await client.delete(f"/v1/jobs/{queued}")
        last = await asyncio.wait_for(pending, T)
        assert last is not None and last["state"] == "cancelled"
        await stream.aclose()
        await client.delete(f"/v1/jobs/{running}")


async def test_events_of_a_running_job_number_their_ids_and_end_at_the_terminal_state(toy_models: Path,
                                                                                      tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path, job_progress_interval_s=0.01) as (client, _):
        job_id = (await client.post("/v1/jobs", json={**JOB, "steps": 2000})).json()["id"]
        text = (await client.get(f"/v1/jobs/{job_id}/events")).text
        blocks = [b for b in text.strip().split("\n\n") if not b.startswith(":")]
        ids = [next(line for line in b.split("\n") if line.startswith("id: ")) for b in blocks]
        assert ids == [f"id: {i}" for i in range(1, len(blocks) + 1)]
        assert [b.count("retry:") for b in blocks] == [1] + [0] * (len(blocks) - 1)


async def test_a_job_that_hits_its_own_timeout_fails_with_a_warning_not_a_traceback(
    toy_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.engine.jobs")
    async with serve(toy_models, tmp_path) as (client, _):
        job_id = (await client.post("/v1/jobs", json={**LONG, "timeout_s": 0.05})).json()["id"]
        final = (await finish(client, job_id))[-1]
        assert final["state"] == "failed" and "timeout_s=0.05" in final["error"]
        assert final["steps_done"] < final["steps_total"]  # how far it got
    records = [r for r in caplog.records if job_id in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING] and records[0].exc_info is None


@pytest.mark.parametrize("sampler", ["raw", "mh", "drs"])
async def test_a_succeeded_job_reports_all_its_steps_done(toy_models: Path, tmp_path: Path, sampler: str) -> None:
    async with serve(toy_models, tmp_path) as (client, _):
        job_id = (await client.post("/v1/jobs", json={**JOB, "sampler": sampler})).json()["id"]
        final = (await finish(client, job_id))[-1]
        assert final["state"] == "succeeded" and final["progress"] == 1.0
        assert final["steps_done"] == final["steps_total"] > 0
        assert (await client.get(f"/v1/jobs/{job_id}")).json()["steps_done"] == final["steps_total"]


async def test_the_result_of_a_job_that_ended_without_one_says_it_never_will(toy_models: Path,
                                                                             tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec) as (client, _):
        started = submitted(rec, 1)
        job_id = (await client.post("/v1/jobs", json=LONG)).json()["id"]
        await wait(started)
        running = (await client.get(f"/v1/jobs/{job_id}/result")).json()["error"]["message"]
        assert running == f"job {job_id} is running; its result exists once it has succeeded"
        await client.delete(f"/v1/jobs/{job_id}")
        r = await client.get(f"/v1/jobs/{job_id}/result")
        err = r.json()["error"]
        assert r.status_code == 409 and err["type"] == "conflict"  # the status the SDK and CLI expect
        assert err["message"] == (f"job {job_id} is cancelled: it has no result and never will; only a succeeded job "
                                  "has one (create a new job to run it again)")
        failed = (await client.post("/v1/jobs", json={**LONG, "timeout_s": 0.05})).json()["id"]
        assert (await finish(client, failed))[-1]["state"] == "failed"
        message = (await client.get(f"/v1/jobs/{failed}/result")).json()["error"]["message"]
        assert message.startswith(f"job {failed} is failed (request did not finish within timeout_s=0.05")
        assert "it has no result and never will" in message
