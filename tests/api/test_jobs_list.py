"""``GET /v1/jobs`` (newest first, state filter, limit, cursor pages) and the cap on queued jobs (429)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.routes.jobs import MAX_JOB_LIST_LIMIT
from tests.api.conftest import serve
from tests.api.test_concurrency import submitted, wait
from tests.api.test_jobs import JOB, finish
from tests.engine.helpers import Recorder

MAX_PAGES = 20
LONG = {**JOB, "n": 2, "steps": 100_000}  # runs until cancelled


async def pages(client: httpx.AsyncClient, **params: Any) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    cursor = None
    for _ in range(MAX_PAGES):  # a cursor that does not advance must fail, not loop
        r = await client.get("/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body["jobs"])
        cursor = body["next"]
        if cursor is None:
            return out
    raise AssertionError(f"more than {MAX_PAGES} pages")


async def test_list_newest_first_with_state_filters_and_pages(toy_models: Path, tmp_path: Path) -> None:
    async with serve(toy_models, tmp_path) as (client, _):
        ids = [(await client.post("/v1/jobs", json={**JOB, "seed": s, "steps": 5})).json()["id"] for s in range(4)]
        for job_id in ids:
            assert (await finish(client, job_id))[-1]["state"] == "succeeded"
        cancelled = (await client.post("/v1/jobs", json=LONG)).json()["id"]
        await client.delete(f"/v1/jobs/{cancelled}")
        assert (await finish(client, cancelled))[-1]["state"] == "cancelled"

        everything = (await client.get("/v1/jobs")).json()
        assert [j["id"] for j in everything["jobs"]] == [cancelled, *ids[::-1]] and everything["next"] is None
        first = everything["jobs"][1]
        assert first["state"] == "succeeded" and first["progress"] == 1.0 and first["request"]["seed"] == 3

        for query in ({"state": "succeeded"}, {"state": ["succeeded", "running"]}, {"state": "succeeded,queued"}):
            listed = (await client.get("/v1/jobs", params=query)).json()["jobs"]
            assert [j["id"] for j in listed] == ids[::-1], query
        listed = (await client.get("/v1/jobs", params={"state": "cancelled"})).json()["jobs"]
        assert [j["id"] for j in listed] == [cancelled]

        paged = await pages(client, limit=2)
        assert [len(p) for p in paged] == [2, 2, 1]
        assert [j["id"] for p in paged for j in p] == [cancelled, *ids[::-1]]
        assert [j["id"] for p in await pages(client, limit=1, state="succeeded") for j in p] == ids[::-1]


@pytest.mark.parametrize(("params", "param", "message"), [
    ({"state": "done"}, "state",
     "state must be one of queued, running, succeeded, failed, cancelled, interrupted, got 'done'"),
    ({"state": "queued,Running"}, "state", "got 'Running'"),
    ({"limit": 0}, "limit", f"limit must be in [1, {MAX_JOB_LIST_LIMIT}], got 0"),
    ({"limit": MAX_JOB_LIST_LIMIT + 1}, "limit", f"limit must be in [1, {MAX_JOB_LIST_LIMIT}], got 1001"),
    ({"limit": "ten"}, "limit", "limit: Input should be a valid integer"),
    ({"cursor": "not-a-cursor"}, "cursor", "cursor must be the `next` of a previous GET /v1/jobs page, got 'not-a-"),
])
async def test_list_rejects_bad_queries_naming_the_value_and_the_limit(
    toy_models: Path, tmp_path: Path, params: dict[str, Any], param: str, message: str
) -> None:
    async with serve(toy_models, tmp_path) as (client, _):
        r = await client.get("/v1/jobs", params=params)
        err = r.json()["error"]
        assert r.status_code == 422 and err["type"] == "invalid_request" and err["param"] == param
        assert message in err["message"]


async def test_queued_jobs_beyond_max_queued_jobs_get_429_naming_the_setting(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, max_running_jobs=1, max_queued_jobs=2,
                     retry_after_s=7) as (client, _):
        started = submitted(rec, 1)
        running = (await client.post("/v1/jobs", json=LONG)).json()["id"]
        await wait(started)  # the runner took it: it is running, not queued
        queued = [(await client.post("/v1/jobs", json={**JOB, "seed": s})).json()["id"] for s in (1, 2)]
        r = await client.post("/v1/jobs", json=JOB)
        err = r.json()["error"]
        assert r.status_code == 429 and err["type"] == "overloaded" and r.headers["retry-after"] == "7"
        assert "2 jobs are waiting to start, the limit is max_queued_jobs=2" in err["message"]
        assert len((await client.get("/v1/jobs")).json()["jobs"]) == 3  # nothing was stored
        bad = await client.post("/v1/jobs", json={**JOB, "n": 0})
        assert bad.status_code == 422  # validation first: a bad body is told what is wrong, not to retry
        await client.delete(f"/v1/jobs/{queued[0]}")  # a cancelled job no longer counts
        again = await client.post("/v1/jobs", json=JOB)
        assert again.status_code == 202
        for job_id in (running, queued[1], again.json()["id"]):
            await client.delete(f"/v1/jobs/{job_id}")


async def test_queued_job_work_beyond_max_queued_job_chain_steps_gets_429(toy_models: Path, tmp_path: Path) -> None:
    rec = Recorder()
    async with serve(toy_models, tmp_path, observer=rec, max_running_jobs=1,
                     max_queued_job_chain_steps=500) as (client, _):
        started = submitted(rec, 1)
        running = (await client.post("/v1/jobs", json=LONG)).json()["id"]  # 200_000 steps, running: not counted
        await wait(started)
        first = await client.post("/v1/jobs", json=JOB)  # 8 × 30 = 240 queued
        assert first.status_code == 202
        r = await client.post("/v1/jobs", json={**JOB, "steps": 33})  # 240 + 264 > 500
        err = r.json()["error"]
        assert r.status_code == 429 and err["type"] == "overloaded" and "retry-after" in r.headers
        assert err["message"].startswith("too much queued job work: 1 queued jobs hold 240 chain-steps, + 264 "
                                         "requested exceeds max_queued_job_chain_steps=500; retry after 1 s")
        assert (await client.post("/v1/jobs", json={**JOB, "steps": 32})).status_code == 202  # 240 + 256 fits
        for job in (await client.get("/v1/jobs")).json()["jobs"]:
            await client.delete(f"/v1/jobs/{job['id']}")
        assert (await client.get(f"/v1/jobs/{running}")).json()["state"] == "cancelled"


@pytest.mark.parametrize(("job_id", "message"), [
    ("job_0123456789abcdef", "no job 'job_0123456789abcdef'"),
    ("nope", "no job 'nope' (job ids are 'job_' and 16 hex digits)"),
    ("x" * 5000, f"no job '{'x' * 40}'... (5000 characters; job ids have 20)"),
])
async def test_an_unknown_job_id_is_quoted_shortened(toy_models: Path, tmp_path: Path, job_id: str,
                                                     message: str) -> None:
    async with serve(toy_models, tmp_path) as (client, _):
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result", f"/v1/jobs/{job_id}/events"):
            r = await client.get(path)
            assert r.status_code == 404 and r.json()["error"]["message"] == message, path
