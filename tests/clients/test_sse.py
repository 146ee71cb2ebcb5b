"""SSE parsing (pure decoder) and ``jobs.events`` streaming, sync and async."""

from __future__ import annotations

import json

import httpx
import pytest
from gansampler import APIConnectionError, AsyncClient, Client, NotFoundError
from gansampler._sse import ServerSentEvent, SSEDecoder, iter_events

from .conftest import FakeServer, error_response, job_body


def decode_all(text: str) -> list[ServerSentEvent]:
    return list(iter_events(text.splitlines()))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('event: progress\ndata: {"a": 1}\n\n', [ServerSentEvent("progress", '{"a": 1}')]),
        ("data: one\ndata: two\n\n", [ServerSentEvent("message", "one\ntwo")]),  # multi-line data
        ("data:no-space\n\n", [ServerSentEvent("message", "no-space")]),
        ("data:  two spaces\n\n", [ServerSentEvent("message", " two spaces")]),  # only one space stripped
        (": keep-alive\n\n", []),  # comment only: nothing dispatched
        ("event: x\r\ndata: y\r\n\r\n", [ServerSentEvent("x", "y")]),  # CRLF
        ("id: 7\nretry: 1500\ndata: d\n\n", [ServerSentEvent("message", "d", id="7", retry=1500)]),
        ("retry: soon\nfoo: bar\ndata: d\n\n", [ServerSentEvent("message", "d")]),  # ignored fields
        ("data: a\n\ndata: b\n\n", [ServerSentEvent("message", "a"), ServerSentEvent("message", "b")]),
        ("data: unterminated", []),  # no blank line: discarded
        ("data\n\n", [ServerSentEvent("message", "")]),  # field with no colon
    ],
)
def test_decoder_table(text: str, expected: list[ServerSentEvent]) -> None:
    assert decode_all(text) == expected


def test_decoder_tracks_last_event_id() -> None:
    decoder = SSEDecoder()
    for line in ["id: 3", "data: x", ""]:
        decoder.decode(line)
    assert decoder.last_event_id == "3"


def event_stream(*statuses: dict, extra: str = "") -> bytes:
    chunks = [": hello\n\n", extra]
    chunks += [f"event: progress\ndata: {json.dumps(s)}\n\n" for s in statuses]
    return "".join(chunks).encode()


def test_sync_events_stop_at_terminal_state(client: Client, server: FakeServer) -> None:
    body = event_stream(
        job_body("running", 0.25),
        job_body("running", 0.5),
        job_body("succeeded", 1.0),
        job_body("running", 0.9),
        extra="event: other\ndata: not json\n\n",
    )
    server.add(
        "GET",
        "/v1/jobs/job_1/events",
        lambda r: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}),
    )
    states = [(s.state, s.progress) for s in client.jobs.events("job_1")]
    assert states == [("running", 0.25), ("running", 0.5), ("succeeded", 1.0)]
    assert server.requests[0].headers["accept"] == "text/event-stream"
    assert server.requests[0].extensions["timeout"]["read"] is None


def test_events_error_status_raises(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/nope/events", lambda r: error_response(404, "not_found", "no job nope", None))
    with pytest.raises(NotFoundError, match="no job nope"):
        list(client.jobs.events("nope"))


async def test_async_events(aclient: AsyncClient, server: FakeServer) -> None:
    body = event_stream(job_body("queued"), job_body("running", 0.5), job_body("failed", 0.5, error="boom"))
    server.add("GET", "/v1/jobs/job_1/events", lambda r: httpx.Response(200, content=body))
    seen = [s async for s in aclient.jobs.events("job_1")]
    assert [s.state for s in seen] == ["queued", "running", "failed"]
    assert seen[-1].error == "boom"


def test_job_handle_events_update_status(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("running", 0.1)))
    server.add(
        "GET",
        "/v1/jobs/job_1/events",
        lambda r: httpx.Response(200, content=event_stream(job_body("running", 0.7), job_body("cancelled", 0.7))),
    )
    job = client.jobs.get("job_1")
    assert [s.progress for s in job.events()] == [0.7, 0.7]
    assert job.state == "cancelled" and job.done


def _broken_stream(*statuses: dict, asynchronous: bool = False) -> httpx.Response:
    """A 200 event stream that delivers ``statuses`` and then breaks like a reset connection."""
    body = event_stream(*statuses)

    def chunks():  # type: ignore[no-untyped-def]
        yield body
        raise httpx.ReadError("connection reset by peer")

    async def achunks():  # type: ignore[no-untyped-def]
        yield body
        raise httpx.ReadError("connection reset by peer")

    return httpx.Response(200, content=achunks() if asynchronous else chunks())


def test_events_reconnect_after_an_early_close_without_repeating_a_status(
    client: Client, server: FakeServer, sleeps: list[float]
) -> None:
    server.add("GET", "/v1/jobs/job_1/events", [
        httpx.Response(200, content=event_stream(job_body("running", 0.25))),  # closed before a terminal state
        httpx.Response(200, content=event_stream(job_body("running", 0.25), job_body("running", 0.5),
                                                 job_body("succeeded", 1.0))),
    ])
    states = [(s.state, s.progress) for s in client.jobs.events("job_1")]
    assert states == [("running", 0.25), ("running", 0.5), ("succeeded", 1.0)]
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_events_reconnect_after_a_broken_stream(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1/events", [
        _broken_stream(job_body("running", 0.1)),
        _broken_stream(job_body("running", 0.1), job_body("running", 0.6)),
        httpx.Response(200, content=event_stream(job_body("running", 0.6), job_body("failed", 0.6, error="nan"))),
    ])
    seen = list(client.jobs.events("job_1"))
    assert [(s.state, s.progress) for s in seen] == [("running", 0.1), ("running", 0.6), ("failed", 0.6)]


def test_events_give_up_after_max_retries_failed_reopenings(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1/events", lambda r: _broken_stream())  # every stream breaks at once
    with pytest.raises(APIConnectionError):
        list(client.jobs.events("job_1"))
    assert len(server.requests) == 1 + client.max_retries
    server.add("GET", "/v1/jobs/job_2/events",
               lambda r: httpx.Response(200, content=event_stream(job_body("running", 0.3))))
    assert [s.progress for s in client.jobs.events("job_2")] == [0.3]  # closed each time: the iteration ends
    assert len(server.requests) == 2 * (1 + client.max_retries)


async def test_async_events_reconnect(aclient: AsyncClient, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1/events", [
        _broken_stream(job_body("queued"), asynchronous=True),
        httpx.Response(200, content=event_stream(job_body("queued"), job_body("succeeded", 1.0))),
    ])
    assert [s.state async for s in aclient.jobs.events("job_1")] == ["queued", "succeeded"]


def _draining() -> httpx.Response:
    return error_response(503, "model_unavailable", "the server is shutting down", headers={"retry-after": "1"})


def test_events_follow_a_job_through_a_server_restart(client: Client, server: FakeServer) -> None:
    """The server drains (the stream ends with the job queued again), is down (refused), comes back loading (503),
    then streams the job's new run: every status once, none lost."""
    refused = [httpx.ConnectError("refused") for _ in range(6)]
    server.add("GET", "/v1/jobs/job_1/events", [
        httpx.Response(200, content=event_stream(job_body("running", 0.25), job_body("queued", 0.0))),
        *refused, *[_draining() for _ in range(3)],
        httpx.Response(200, content=event_stream(job_body("queued", 0.0), job_body("running", 0.5),
                                                 job_body("succeeded", 1.0))),
    ])
    states = [(s.state, s.progress) for s in client.jobs.events("job_1")]
    assert states == [("running", 0.25), ("queued", 0.0), ("running", 0.5), ("succeeded", 1.0)]
    assert len(server.requests) == 1 + 6 + 3 + 1
    server.add("GET", "/v1/jobs/job_2/events", [httpx.ConnectError("refused")])
    with pytest.raises(APIConnectionError):  # None: only the request's own retries
        list(client.jobs.events("job_2", outage_timeout=None))
    assert len(server.requests) == 11 + 1 + client.max_retries


async def test_async_events_follow_a_job_through_a_server_restart(aclient: AsyncClient, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1/events", [
        httpx.Response(200, content=event_stream(job_body("queued", 0.0))),
        *[_draining() for _ in range(3)], httpx.ConnectError("refused"),
        httpx.Response(200, content=event_stream(job_body("running", 0.5), job_body("succeeded", 1.0))),
    ])
    assert [s.state async for s in aclient.jobs.events("job_1")] == ["queued", "running", "succeeded"]
