"""A graceful shutdown (``Services.drain``, what ``serve`` runs on SIGTERM / SIGINT): no new work, running requests
finish within the grace or get a JSON 503 with Retry-After, running jobs are queued again and their event streams end."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from service.engine.worker import EngineObserver, StepEvent
from tests.api.conftest import running_app

GRACE_S = 0.3
REFUSE_S = 5.0  # new work during a shutdown is refused at once, not queued behind the running requests
WAIT_S = 60.0


STEP_S = 0.02  # each pool step after the gate opens: a 50-step request then runs for about a second
ONE_STEP = {"block_proposals": 1}  # one chain-step per row per pool step: a request takes its steps one by one


class Gate(EngineObserver):
    """Holds the first pool step until released, then slows every step: a request stays running as long as a test
    needs."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.stepped = threading.Event()

    def on_step(self, event: StepEvent) -> None:
        self.stepped.set()
        self.open.wait(WAIT_S)
        time.sleep(STEP_S)  # stands in for a network's compute


@asynccontextmanager
async def gated(models: Path, data: Path, steps: int, **overrides: Any) -> AsyncIterator[tuple[Any, ...]]:
    """An app whose engine holds at its first step, with an mh request of ``steps`` steps running in it; yields
    (client, services, gate, the request's task)."""
    gate = Gate()
    async with running_app(models, data, observer=gate, **ONE_STEP, **overrides) as (app, services):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            running = asyncio.create_task(client.post("/v1/samples/mh", json={"model": "gauss", "n": 8, "steps": steps}))
            assert await asyncio.to_thread(gate.stepped.wait, WAIT_S)
            yield client, services, gate, running


async def test_a_request_running_past_the_grace_gets_a_json_503(toy_models: Path, tmp_path: Path) -> None:
    async with gated(toy_models, tmp_path / "data", 50) as (client, services, gate, running):
        drain = asyncio.create_task(services.drain(GRACE_S))
        while not services.engine.draining:
            await asyncio.sleep(0)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["draining"] is True
        new = await asyncio.wait_for(client.post("/v1/samples/raw", json={"model": "gauss", "n": 2}), REFUSE_S)
        assert new.status_code == 503 and new.headers["retry-after"] == "1"
        assert "shutting down" in new.json()["error"]["message"]
        job = await asyncio.wait_for(client.post("/v1/jobs", json={"sampler": "raw", "model": "gauss", "n": 2}),
                                     REFUSE_S)
        assert job.status_code == 503
        await asyncio.sleep(GRACE_S)
        gate.open.set()  # the grace is over: the step in progress ends, and the engine fails what is left
        await drain
        r = await running
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/json" and r.headers["retry-after"] == "1"
    assert r.json()["error"]["message"] == "the sampling engine is shutting down"


async def test_a_request_that_finishes_within_the_grace_is_answered(toy_models: Path, tmp_path: Path) -> None:
    async with gated(toy_models, tmp_path / "data", 5) as (_, services, gate, running):
        drain = asyncio.create_task(services.drain(WAIT_S))
        gate.open.set()
        r = await running
        await asyncio.wait_for(drain, WAIT_S)  # returns once nothing runs, not after the whole grace
    assert r.status_code == 200, r.text


async def test_a_running_job_is_queued_again_and_its_event_stream_ends(toy_models: Path, tmp_path: Path) -> None:
    gate = Gate()
    async with running_app(toy_models, tmp_path / "data", observer=gate, job_progress_interval_s=0.05,
                           max_running_jobs=1) as (app, s):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            job = (await client.post("/v1/jobs", json={"sampler": "mh", "model": "gauss", "n": 8, "steps": 50})).json()
            queued = (await client.post("/v1/jobs", json={"sampler": "raw", "model": "gauss", "n": 2})).json()
            assert await asyncio.to_thread(gate.stepped.wait, WAIT_S)

            async def states(job_id: str) -> list[str]:
                async with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
                    return [json.loads(line[5:])["state"] async for line in r.aiter_lines() if line.startswith("data:")]

            streams = [asyncio.create_task(states(j["id"])) for j in (job, queued)]
            await asyncio.sleep(0.2)
            drain = asyncio.create_task(s.drain(GRACE_S))
            running_states, queued_states = await asyncio.wait_for(asyncio.gather(*streams), WAIT_S)
            gate.open.set()
            await drain
            after = {j["id"]: (await client.get(f"/v1/jobs/{j['id']}")).json()["state"] for j in (job, queued)}
    assert running_states[-2:] == ["running", "queued"]
    assert queued_states[-1] == "queued"
    assert after == {job["id"]: "queued", queued["id"]: "queued"}  # both run at the next start
