"""``client.jobs.list`` / ``list_all`` (sync and async), ``gansampler job list``, and event streams with keep-alive
comments, ``id:`` and ``retry:`` fields, over a fake server."""

from __future__ import annotations

import json
from itertools import islice

import httpx
import pytest
from gansampler import AsyncClient, Client, JobList
from gansampler.cli import main
from gansampler.cli._common import EXIT_OK, EXIT_USAGE

from .conftest import FakeServer, job_body

MAX_JOBS = 20


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANSAMPLER_URL", raising=False)
    monkeypatch.delenv("GANSAMPLER_API_KEY", raising=False)


def paged(request: httpx.Request) -> httpx.Response:
    """Five jobs job_5..job_1 (newest first), pages of ``limit`` (default 2), cursors "c<offset>"."""
    ids = [f"job_{i}" for i in range(5, 0, -1)]
    limit = int(request.url.params.get("limit", 2))
    start = int(request.url.params.get("cursor", "c0")[1:])
    page = ids[start:start + limit]
    nxt = f"c{start + limit}" if start + limit < len(ids) else None
    return httpx.Response(200, json={"jobs": [job_body("succeeded", 1.0, job_id=j) for j in page], "next": nxt})


def test_list_sends_the_filters_and_returns_a_page(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs", paged)
    page = client.jobs.list(state=["queued", "running"], limit=2, cursor="c2")
    assert isinstance(page, JobList) and [j.id for j in page.jobs] == ["job_3", "job_2"] and page.next == "c4"
    assert dict(server.requests[-1].url.params) == {"state": "queued,running", "limit": "2", "cursor": "c2"}
    client.jobs.list(state="failed")
    assert dict(server.requests[-1].url.params) == {"state": "failed"}
    client.jobs.list()
    assert server.requests[-1].url.query == b""


def test_list_all_follows_the_cursors(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs", paged)
    got = [j.id for j in islice(client.jobs.list_all(state="succeeded"), MAX_JOBS)]  # bounded: a loop must fail
    assert got == ["job_5", "job_4", "job_3", "job_2", "job_1"]
    assert [r.url.params.get("cursor") for r in server.requests] == [None, "c2", "c4"]
    assert all(r.url.params["state"] == "succeeded" for r in server.requests)


async def test_async_list_and_list_all(aclient: AsyncClient, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs", paged)
    page = await aclient.jobs.list(limit=3)
    assert [j.id for j in page.jobs] == ["job_5", "job_4", "job_3"] and page.next == "c3"
    got = []
    async for status in aclient.jobs.list_all(page_size=4):
        got.append(status.id)
        assert len(got) <= MAX_JOBS, "list_all does not end"
    assert got == [f"job_{i}" for i in range(5, 0, -1)]


def run(server: FakeServer, *argv: str) -> int:
    return main(["--url", "http://test", "--max-retries", "0", *argv], transport=httpx.MockTransport(server))


def test_cli_job_list_prints_a_table_and_the_next_cursor(server: FakeServer,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    server.add("GET", "/v1/jobs", paged)
    assert run(server, "job", "list", "--state", "succeeded,failed", "--state", "queued", "--limit", "2") == EXIT_OK
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["JOB", "STATE", "PROGRESS", "MODEL", "SAMPLER", "N", "CREATED"]
    assert lines[1].split() == ["job_5", "succeeded", "100%", "toy", "rep", "3", "2026-01-01T00:00:00Z"]
    assert len(lines) == 3
    assert "gansampler job list --cursor c2" in err
    assert dict(server.requests[-1].url.params) == {"state": "succeeded,failed,queued", "limit": "2"}

    assert run(server, "job", "list", "--all", "--json") == EXIT_OK
    body = json.loads(capsys.readouterr().out)
    assert [j["id"] for j in body["jobs"]] == [f"job_{i}" for i in range(5, 0, -1)] and body["next"] is None

    assert run(server, "job", "list", "--cursor", "c4", "--json") == EXIT_OK
    assert [j["id"] for j in json.loads(capsys.readouterr().out)["jobs"]] == ["job_1"]


def test_cli_job_list_rejects_an_unknown_state(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(server, "job", "list", "--state", "queued,done")
    assert exc.value.code == EXIT_USAGE
    assert "--state must be one of queued, running, succeeded, failed, cancelled, interrupted, got 'done'" in (
        capsys.readouterr().err)
    assert server.requests == []


STREAM_WITH_KEEP_ALIVES = (
    f'event: progress\ndata: {json.dumps(job_body("queued", 0.0))}\nid: 1\nretry: 2000\n\n'
    ": keep-alive\n\n: keep-alive\n\n"
    f'event: progress\ndata: {json.dumps(job_body("running", 0.5))}\nid: 2\n\n'
    ": keep-alive\n\n"
    f'event: progress\ndata: {json.dumps(job_body("succeeded", 1.0))}\nid: 3\n\n'
)


def test_events_skip_keep_alive_comments(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1/events", lambda r: httpx.Response(200, content=STREAM_WITH_KEEP_ALIVES.encode()))
    assert [s.state for s in client.jobs.events("job_1")] == ["queued", "running", "succeeded"]
    assert len(server.requests) == 1  # one stream, read to its terminal event: no reopening


async def test_async_events_skip_keep_alive_comments(aclient: AsyncClient, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1/events", lambda r: httpx.Response(200, content=STREAM_WITH_KEEP_ALIVES.encode()))
    assert [s.state async for s in aclient.jobs.events("job_1")] == ["queued", "running", "succeeded"]
