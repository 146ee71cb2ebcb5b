"""Retry policy: which failures are retried, and how long the client waits (time is injected, never slept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from gansampler import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    GatewayTimeoutError,
    InternalServerError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from gansampler._base_client import (
    backoff_delay,
    parse_retry_after,
    retry_delay,
    should_retry_exception,
    should_retry_status,
)
from gansampler._constants import INITIAL_RETRY_DELAY_S, MAX_RETRY_AFTER_S, MAX_RETRY_DELAY_S, RETRY_JITTER

from .conftest import FakeServer, Sleeps, error_response, job_body, sample_body

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


# --- pure delay table -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "rand", "expected"),
    [
        (0, 0.0, INITIAL_RETRY_DELAY_S),
        (1, 0.0, 2 * INITIAL_RETRY_DELAY_S),
        (2, 0.0, 4 * INITIAL_RETRY_DELAY_S),
        (3, 0.0, 8 * INITIAL_RETRY_DELAY_S),
        (10, 0.0, MAX_RETRY_DELAY_S),  # capped
        (0, 1.0, INITIAL_RETRY_DELAY_S * (1 - RETRY_JITTER)),  # most jitter
        (10, 0.5, MAX_RETRY_DELAY_S * (1 - RETRY_JITTER / 2)),
    ],
)
def test_backoff_table(retry: int, rand: float, expected: float) -> None:
    assert backoff_delay(retry, rand) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (format_datetime(NOW + timedelta(seconds=5), usegmt=True), 5.0),  # HTTP date in the future
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),  # in the past: go now
        ("Thu, 01 Jan 2026 12:00:07 GMT", 7.0),
        ("soon", None),
        ("-2", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    result = parse_retry_after({"retry-after": value}, NOW)
    assert result == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("headers", "retry", "expected"),
    [
        ({"retry-after": "2"}, 0, 2.0),  # the server's wish, no jitter
        ({"retry-after": "2"}, 5, 2.0),  # ... whatever the attempt
        ({"retry-after": "3600"}, 0, MAX_RETRY_AFTER_S),  # capped
        ({"retry-after": "Thu, 01 Jan 2026 12:00:04 GMT"}, 0, 4.0),
        ({"retry-after": "garbage"}, 1, 2 * INITIAL_RETRY_DELAY_S),  # unparsable: backoff
        ({}, 2, 4 * INITIAL_RETRY_DELAY_S),
        (None, 0, INITIAL_RETRY_DELAY_S),
    ],
)
def test_retry_delay_table(headers: dict[str, str] | None, retry: int, expected: float) -> None:
    assert retry_delay(retry, headers, rand=0.0, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("status", "idempotent", "retried"),
    [
        (429, False, True),
        (503, False, True),
        (429, True, True),
        (503, True, True),
        (502, True, True),
        (504, True, False),
        (502, False, False),
        (504, False, False),
        (400, True, False),
        (401, True, False),
        (404, True, False),
        (409, True, False),
        (413, True, False),
        (422, True, False),
        (422, False, False),
        (500, True, False),
        (500, False, False),
    ],
)
def test_retry_status_table(status: int, idempotent: bool, retried: bool) -> None:
    assert should_retry_status(status, idempotent) is retried


@pytest.mark.parametrize(
    ("exc", "idempotent", "method", "retried"),
    [
        (httpx.ConnectError("refused"), False, "POST", True),
        (httpx.ConnectTimeout("slow connect"), False, "POST", True),
        (httpx.PoolTimeout("pool"), False, "POST", True),
        (httpx.ReadTimeout("slow read"), False, "POST", False),
        (httpx.ReadTimeout("slow read"), True, "POST", False),  # sampling that outlived the client: computing
        (httpx.ReadTimeout("slow read"), True, "GET", True),
        (httpx.WriteTimeout("slow write"), True, "GET", True),
        (httpx.RemoteProtocolError("reset"), False, "POST", False),
        (httpx.RemoteProtocolError("reset"), True, "POST", True),
        (httpx.ReadError("reset"), True, "GET", True),
    ],
)
def test_retry_exception_table(exc: httpx.TransportError, idempotent: bool, method: str, retried: bool) -> None:
    assert should_retry_exception(exc, idempotent, method) is retried


# --- the loop, through MockTransport ----------------------------------------------------------------------------


def test_503_with_retry_after_then_success(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add(
        "POST",
        "/v1/samples/rep",
        [
            error_response(503, "model_unavailable", "loading", headers={"retry-after": "2"}),
            httpx.Response(200, json=sample_body()),
        ],
    )
    batch = client.samples.create("toy", sampler="rep", n=3)
    assert batch.seed == 7
    assert sleeps == [2.0]
    assert len(server.requests) == 2
    assert server.bodies()[0] == server.bodies()[1]  # the retry sends the same request


def test_429_http_date_retry_after(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    client._now = lambda: NOW
    when = format_datetime(NOW + timedelta(seconds=3), usegmt=True)
    server.add(
        "POST",
        "/v1/jobs",
        [
            error_response(429, "overloaded", "queue full", headers={"retry-after": when}),
            httpx.Response(202, json=job_body()),
        ],
    )
    job = client.jobs.create("toy", sampler="rep", n=3)  # 429 is retried even for job creation
    assert job.id == "job_1"
    assert sleeps == [pytest.approx(3.0)]


def test_429_gives_up_after_max_retries_with_backoff(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("GET", "/v1/models", [error_response(429, "overloaded", "queue full")])
    with pytest.raises(RateLimitError):
        client.models.list()
    assert len(server.requests) == 1 + client.max_retries
    assert sleeps == [INITIAL_RETRY_DELAY_S, 2 * INITIAL_RETRY_DELAY_S]


def test_jitter_shortens_backoff(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    client._random = lambda: 1.0
    server.add("GET", "/v1/models", [error_response(503, "model_unavailable", "x")])
    with pytest.raises(ServiceUnavailableError):
        client.models.list()
    assert sleeps == [
        pytest.approx(INITIAL_RETRY_DELAY_S * (1 - RETRY_JITTER)),
        pytest.approx(2 * INITIAL_RETRY_DELAY_S * (1 - RETRY_JITTER)),
    ]


def test_422_is_never_retried(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("POST", "/v1/samples/rep", [error_response(422, "invalid_request", "n must be <= 1024, got 5000", "n")])
    with pytest.raises(UnprocessableEntityError) as info:
        client.samples.create("toy", sampler="rep", n=5000)
    assert info.value.param == "n"
    assert len(server.requests) == 1 and sleeps == []


def test_500_is_not_retried(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("GET", "/v1/models", [error_response(500, "internal_error", "bug")])
    with pytest.raises(InternalServerError):
        client.models.list()
    assert len(server.requests) == 1 and sleeps == []


def test_sampling_read_timeout_and_504_are_not_retried(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("POST", "/v1/samples/rep", [httpx.ReadTimeout("slow")])
    with pytest.raises(APITimeoutError):
        client.samples.create("toy", sampler="rep", n=3)
    server.add("POST", "/v1/samples/rep", [error_response(504, "timeout", "timeout_s elapsed")])
    with pytest.raises(GatewayTimeoutError):
        client.samples.create("toy", sampler="rep", n=3, timeout_s=1)
    assert len(server.requests) == 2 and sleeps == []


def test_502_retried_for_sampling_not_for_job_creation(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("POST", "/v1/samples/rep", [httpx.Response(502), httpx.Response(200, json=sample_body())])
    client.samples.create("toy", sampler="rep", n=3)
    assert len(server.requests) == 2
    server.add("POST", "/v1/jobs", [httpx.Response(502)])
    with pytest.raises(InternalServerError):
        client.jobs.create("toy", sampler="rep", n=3)
    assert len(server.requests) == 3


def test_cancel_is_not_retried_on_502(client: Client, server: FakeServer) -> None:
    server.add("DELETE", "/v1/jobs/job_1", [httpx.Response(502)])
    with pytest.raises(InternalServerError):
        client.jobs.cancel("job_1")
    assert len(server.requests) == 1


def test_connect_error_retried_then_raised(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("POST", "/v1/jobs", [httpx.ConnectError("refused")])
    with pytest.raises(APIConnectionError, match="refused") as info:
        client.jobs.create("toy", sampler="rep", n=3)
    assert not isinstance(info.value, APITimeoutError)
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_read_timeout_on_job_creation_is_not_retried(client: Client, server: FakeServer) -> None:
    server.add("POST", "/v1/jobs", [httpx.ReadTimeout("slow")])
    with pytest.raises(APITimeoutError):
        client.jobs.create("toy", sampler="rep", n=3)
    assert len(server.requests) == 1


def test_read_timeout_on_get_is_retried(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/models", [httpx.ReadTimeout("slow"), httpx.Response(200, json={"models": []})])
    assert client.models.list() == []
    assert len(server.requests) == 2


def test_max_retries_zero_and_per_call_override(client: Client, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("POST", "/v1/samples/rep", [error_response(503, "model_unavailable", "loading")])
    with pytest.raises(ServiceUnavailableError):
        client.samples.create("toy", sampler="rep", n=3, max_retries=0)
    assert len(server.requests) == 1 and sleeps == []
    with pytest.raises(ServiceUnavailableError):
        client.samples.create("toy", sampler="rep", n=3, max_retries=4)
    assert len(server.requests) == 1 + 5


async def test_async_retries_honour_retry_after(aclient: AsyncClient, server: FakeServer, sleeps: Sleeps) -> None:
    server.add(
        "POST",
        "/v1/samples/rep",
        [
            error_response(429, "overloaded", "full", headers={"retry-after": "1.5"}),
            error_response(503, "model_unavailable", "loading"),
            httpx.Response(200, json=sample_body()),
        ],
    )
    batch = await aclient.samples.create("toy", sampler="rep", n=3)
    assert batch.n == 3
    assert sleeps == [1.5, 2 * INITIAL_RETRY_DELAY_S]


async def test_async_422_not_retried(aclient: AsyncClient, server: FakeServer, sleeps: Sleeps) -> None:
    server.add("POST", "/v1/samples/rep", [error_response(422, "invalid_request", "bad", "params.step_size")])
    with pytest.raises(UnprocessableEntityError):
        await aclient.samples.create("toy", sampler="rep", n=3)
    assert len(server.requests) == 1 and sleeps == []
