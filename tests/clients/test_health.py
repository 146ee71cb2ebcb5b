"""``client.health``: /livez, /readyz (503 is an answer there, not an error), and waiting for readiness."""

from __future__ import annotations

import httpx
import pytest
from gansampler import AsyncClient, Client, Readiness, WaitTimeoutError

from .conftest import FakeServer, Sleeps

LOADING = {"ready": False, "models": {"toy@1": "loading"}}
READY = {"ready": True, "models": {"toy@1": "ready", "bad@1": "failed: no file"}}


def test_ready_returns_503_body_without_retrying(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("GET", "/readyz", [httpx.Response(503, json=LOADING, headers={"retry-after": "1"})])
    assert client.health.ready() == Readiness(ready=False, models={"toy@1": "loading"})
    assert len(server.requests) == 1 and sleeps == []


def test_live(client: Client, server: FakeServer) -> None:
    server.add("GET", "/livez", [httpx.Response(200, json={"status": "ok"})])
    assert client.health.live() is True


def test_wait_ready_through_refusals_and_loading(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add(
        "GET",
        "/readyz",
        [
            httpx.ConnectError("refused"),
            httpx.Response(503, json=LOADING),
            httpx.Response(200, json=READY),
        ],
    )
    readiness = client.health.wait_ready(poll_interval=0.5)
    assert readiness.ready and readiness.models["bad@1"].startswith("failed")
    assert len(server.requests) == 3 and sleeps == [0.5, 0.5]  # no retry backoff inside the poll loop


def test_wait_ready_times_out(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    now = [0.0]
    client._clock = lambda: now[0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    client._sleep = sleep
    server.add("GET", "/readyz", [httpx.Response(503, json=LOADING)])
    with pytest.raises(WaitTimeoutError, match=r"not ready after 1 s: models \{'toy@1': 'loading'\}") as info:
        client.health.wait_ready(timeout=1.0, poll_interval=0.4)
    assert isinstance(info.value, TimeoutError)
    assert sleeps == [0.4, 0.4, pytest.approx(0.2)]


async def test_async_wait_ready(aclient: AsyncClient, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("GET", "/readyz", [httpx.Response(503, json=LOADING), httpx.Response(200, json=READY)])
    assert (await aclient.health.wait_ready(poll_interval=0.1)).ready
    assert sleeps == [0.1]
    server.add("GET", "/livez", [httpx.Response(200, json={"status": "ok"})])
    assert await aclient.health.live()
