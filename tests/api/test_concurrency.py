"""Concurrent HTTP requests through one engine: merging, fairness, reproducibility under load, 429, 504,
disconnects and failing models. The worker is held inside a step with events (never sleeps) while requests queue.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from service.engine.errors import Cancelled
from tests.api.conftest import running_app, serve
from tests.api.toy_arch import FAIL_BATCH
from tests.engine.helpers import GATE_TIMEOUT_S, Recorder

T = GATE_TIMEOUT_S
NPZ = {"accept": "application/x-npz"}


def submitted(rec: Recorder, count: int) -> threading.Event:
    """An event set once ``count`` tickets have been submitted to the engine."""
    ev = threading.Event()

    def hook(n: int) -> None:
        if n >= count:
            ev.set()

    rec.on_submit_hook = hook
    return ev


async def wait(ev: threading.Event) -> None:
    assert await asyncio.to_thread(ev.wait, T)


def post(client: httpx.AsyncClient, sampler: str, body: dict[str, Any], **kw: Any) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(client.post(f"/v1/samples/{sampler}", json=body, **kw))


SINGLE_STEPS = {"block_proposals": 1}
"""Tests of the step structure (who shares which step) run one step per pool step; proposal blocks change how many
steps one pool step runs, not who shares it (tests/engine/test_blocks.py)."""


async def test_concurrent_requests_merge_into_one_batch(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, **SINGLE_STEPS) as (client, _):
        rec.hold(lambda ev: True)
        first = post(client, "mh", {"model": "gauss", "n": 4, "steps": 20, "seed": 1})
        await wait(rec.held)
        all_in = submitted(rec, 4)
        rest = [post(client, "mh", {"model": "gauss", "n": 4, "steps": 20, "seed": s}) for s in (2, 3, 4)]
        await wait(all_in)
        rec.release()
        responses = await asyncio.gather(first, *rest)
        assert [r.status_code for r in responses] == [200] * 4
        assert rec.rows() == [4] + [16] * 19 + [12]


async def test_same_seed_same_samples_alone_and_under_http_load(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec) as (client, _):
        body = {"model": "gauss", "n": 6, "steps": 30, "seed": 1234}
        alone = await client.post("/v1/samples/mh", json=body, headers=NPZ)
        rec.hold(lambda ev: True)
        noise = [post(client, "mh", {"model": "gauss", "n": 5, "steps": 25 + s, "seed": s}) for s in range(3)]
        await wait(rec.held)
        all_in = submitted(rec, 1 + 3 + 1 + 3)
        mine = post(client, "mh", body, headers=NPZ)
        more = [post(client, "mh", {"model": "gauss", "n": 7, "steps": 40, "seed": 50 + s}) for s in range(3)]
        await wait(all_in)
        rec.release()
        loaded = await mine
        await asyncio.gather(*noise, *more)
        assert max(rec.rows()) > 6 + 5  # it really shared batches
        a, b = np.load(io.BytesIO(alone.content)), np.load(io.BytesIO(loaded.content))
        for key in ("samples", "z", "logit_final"):
            assert np.array_equal(a[key], b[key]), key
        assert json.loads(a["meta.json"].tobytes())["diagnostics"] == json.loads(b["meta.json"].tobytes())["diagnostics"]


async def test_short_requests_finish_while_a_long_one_runs(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, **SINGLE_STEPS) as (client, _):
        rec.hold(lambda ev: True)
        long = post(client, "mh", {"model": "gauss", "n": 2, "steps": 600, "seed": 1})
        await wait(rec.held)
        all_in = submitted(rec, 4)
        shorts = [post(client, "mh", {"model": "gauss", "n": 2, "steps": 10, "seed": s}) for s in (2, 3, 4)]
        await wait(all_in)
        rec.release()
        for r in await asyncio.gather(*shorts):
            assert r.status_code == 200
        assert not long.done()
        assert (await long).status_code == 200


async def test_overload_is_429_with_retry_after(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, max_queue_chain_steps=100, max_chain_steps=100,
                     **SINGLE_STEPS) as (client, services):
        rec.hold(lambda ev: True)
        first = post(client, "mh", {"model": "gauss", "n": 4, "steps": 20})  # 80 chain-steps
        await wait(rec.held)
        r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 2, "steps": 20})
        assert r.status_code == 429
        assert r.json()["error"]["type"] == "overloaded" and "max_queue_chain_steps=100" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
        rec.release()
        assert (await first).status_code == 200
        assert services.engine.admission.queued == 0


async def test_deadline_is_504_and_drops_the_chains(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path) as (client, services):
        # 2M chain-steps (the request limit): far longer than 0.1 s even at a block of 4096 chain-steps per step
        r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 200, "steps": 10_000, "timeout_s": 0.1})
        assert r.status_code == 504
        assert r.json()["error"] == {"type": "timeout", "param": "timeout_s",
                                     "message": "request did not finish within timeout_s=0.1 (queue time included)"}
        assert services.engine.admission.queued == 0


async def test_client_disconnect_drops_the_chains(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    tickets: list[Any] = []
    async with running_app(toy_models, tmp_path, observer=rec) as (app, services):
        got = submitted(rec, 1)
        orig = services.engine.submit

        def spy(work: Any) -> Any:
            t = orig(work)
            tickets.append(t)
            return t

        services.engine.submit = spy  # type: ignore[method-assign]
        gone = asyncio.Event()
        body = json.dumps({"model": "gauss", "n": 3, "steps": 10_000}).encode()
        sent: list[dict[str, Any]] = []
        calls = 0

        async def receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": body, "more_body": False}
            if not gone.is_set():
                await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/samples/mh", "raw_path": b"/v1/samples/mh", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("test", 80)}
        call = asyncio.create_task(app(scope, receive, send))
        await wait(got)
        ticket = tickets[0]
        rec.hold(lambda ev: ticket.id in ev.tickets)
        await wait(rec.held)  # its chains are stepping
        rec.release()
        gone.set()  # the client goes away mid-run
        await call
        assert isinstance(ticket.future.exception(timeout=T), Cancelled)
        assert ticket.steps_done < ticket.total_chain_steps
        assert services.engine.admission.queued == 0
        assert sent[0]["status"] == 499


async def test_failing_model_fails_its_requests_only(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path) as (client, _):
        bad = post(client, "mh", {"model": "failing", "n": FAIL_BATCH, "steps": 20})
        good = post(client, "mh", {"model": "gauss", "n": 3, "steps": 20})
        r = await bad
        assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
        assert "failing@1" in r.json()["error"]["message"]
        assert (await good).status_code == 200
        again = await client.post("/v1/samples/mh", json={"model": "failing", "n": 3, "steps": 20})
        assert again.status_code == 200  # the pool is rebuilt, the server is up
        assert (await client.get("/livez")).status_code == 200


async def test_two_devices_share_the_load_and_give_the_same_samples(toy_models: Path, tmp_path: Path) -> None:
    """Two device workers (two CPU 'devices'): requests are placed on the less loaded one; a seed's samples do not
    depend on the device."""
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, device=("cpu:0", "cpu:1")) as (client, services):
        assert set(services.engine.workers) == {"cpu:0", "cpu:1"}
        info = (await client.get("/v1/models/gauss")).json()
        assert info["device"] == "cpu:0,cpu:1"
        rec.hold(lambda ev: True)
        first = post(client, "mh", {"model": "gauss", "n": 4, "steps": 30, "seed": 9}, headers=NPZ)
        await wait(rec.held)  # cpu:0 (or cpu:1) is busy with the first request
        all_in = submitted(rec, 2)
        second = post(client, "mh", {"model": "gauss", "n": 4, "steps": 30, "seed": 9}, headers=NPZ)
        await wait(all_in)
        rec.release()
        a, b = await first, await second
        assert {ev.key.device for ev in rec.steps} == {"cpu:0", "cpu:1"}
        assert np.array_equal(np.load(io.BytesIO(a.content))["samples"], np.load(io.BytesIO(b.content))["samples"])
