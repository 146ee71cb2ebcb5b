"""``Job.wait`` / ``result`` / ``cancel`` with an injected clock and sleep, and the progress bar."""

from __future__ import annotations

import io

import httpx
import pytest
from gansampler import (
    APIConnectionError,
    AsyncClient,
    Client,
    ConflictError,
    JobFailedError,
    JobWaitTimeoutError,
    ProgressBar,
)
from gansampler._models import JobStatus
from gansampler._progress import format_bar, format_duration

from .conftest import FakeServer, Sleeps, error_response, job_body, sample_body


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(client: Client, sleeps: Sleeps) -> FakeClock:
    fake = FakeClock()
    client._clock = fake

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        fake.now += seconds

    client._sleep = sleep
    return fake


def script_job(server: FakeServer, *states: tuple[str, float]) -> None:
    server.add("POST", "/v1/jobs", lambda r: httpx.Response(202, json=job_body()))
    server.add("GET", "/v1/jobs/job_1", [httpx.Response(200, json=job_body(s, p)) for s, p in states])


def test_wait_polls_until_terminal(client: Client, server: FakeServer, sleeps: Sleeps, clock: FakeClock) -> None:
    script_job(server, ("queued", 0.0), ("running", 0.5), ("succeeded", 1.0))
    job = client.jobs.create("toy", sampler="rep", n=3)
    status = job.wait(poll_interval=0.25)
    assert status.state == "succeeded" and job.done
    assert sleeps == [0.25, 0.25]


def test_wait_with_progress_draws_bar(
    client: Client, server: FakeServer, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    script_job(server, ("running", 0.3), ("running", 0.6), ("succeeded", 1.0))
    client.jobs.create("toy", sampler="rep", n=3).wait(progress=True, poll_interval=1.0)
    err = capsys.readouterr().err
    assert "job_1" in err and "100%" in err and "succeeded" in err and " 30%" in err


def test_wait_timeout_raises_and_leaves_job(client: Client, server: FakeServer, clock: FakeClock) -> None:
    script_job(server, ("running", 0.1))
    job = client.jobs.create("toy", sampler="rep", n=3)
    with pytest.raises(JobWaitTimeoutError, match="still running") as info:
        job.wait(poll_interval=1.0, timeout=2.5)
    assert info.value.job.state == "running"
    assert clock.now == pytest.approx(2.5)
    assert isinstance(info.value, TimeoutError)


def draining() -> httpx.Response:
    return error_response(503, "model_unavailable", "the server is shutting down", headers={"retry-after": "1"})


def test_wait_polls_on_through_a_server_restart(client: Client, server: FakeServer, clock: FakeClock) -> None:
    """A restart: 503 while it drains, refused connections while it is down, then the job queued again, run and
    succeeded. Each failed poll has used the request's own retries first."""
    script_job(server, ("running", 0.4))
    server.routes[("GET", "/v1/jobs/job_1")] = [
        httpx.Response(200, json=job_body("running", 0.4)), *[draining() for _ in range(3)], *[httpx.ConnectError("refused")] * 6,
        httpx.Response(200, json=job_body("queued", 0.0)), httpx.Response(200, json=job_body("succeeded", 1.0)),
    ]
    job = client.jobs.create("toy", sampler="rep", n=3)
    assert job.wait(poll_interval=1.0).state == "succeeded"
    assert len(server.requests) == 1 + 1 + 9 + 2  # create, running, 3 failed polls of 3 tries, queued, succeeded


def test_wait_raises_the_error_once_the_server_is_gone_longer_than_outage_timeout(
    client: Client, server: FakeServer, clock: FakeClock
) -> None:
    script_job(server, ("running", 0.4))
    server.routes[("GET", "/v1/jobs/job_1")] = [httpx.Response(200, json=job_body("running", 0.4)),
                                                httpx.ConnectError("refused")]
    job = client.jobs.create("toy", sampler="rep", n=3)
    with pytest.raises(APIConnectionError):
        job.wait(poll_interval=1.0, outage_timeout=10.0)
    assert 10.0 < clock.now < 20.0 and job.status.state == "running"
    polls = len(server.requests)
    with pytest.raises(APIConnectionError):  # None: no patience beyond the request's own retries
        job.wait(poll_interval=1.0, outage_timeout=None)
    assert len(server.requests) == polls + 3
    with pytest.raises(ValueError, match="outage_timeout must be >= 0 or None, got -1"):
        job.wait(outage_timeout=-1)


async def test_async_wait_polls_on_through_a_server_restart(aclient: AsyncClient, server: FakeServer) -> None:
    server.add("POST", "/v1/jobs", lambda r: httpx.Response(202, json=job_body()))
    server.add("GET", "/v1/jobs/job_1", [draining(), draining(), draining(), httpx.ConnectError("refused"),
                                         httpx.Response(200, json=job_body("succeeded", 1.0))])
    job = await aclient.jobs.create("toy", sampler="rep", n=3)
    assert (await job.wait(poll_interval=0.1)).state == "succeeded"


def test_wait_rejects_bad_poll_interval(client: Client, server: FakeServer) -> None:
    script_job(server, ("running", 0.1))
    with pytest.raises(ValueError, match="poll_interval must be > 0, got 0"):
        client.jobs.create("toy", sampler="rep", n=3).wait(poll_interval=0)


def test_result_waits_then_fetches(client: Client, server: FakeServer, clock: FakeClock) -> None:
    script_job(server, ("running", 0.5), ("succeeded", 1.0))
    server.add("GET", "/v1/jobs/job_1/result", lambda r: httpx.Response(200, json=sample_body(2)))
    batch = client.jobs.create("toy", sampler="rep", n=2).result()
    assert batch.n == 2 and len(batch.samples) == 2


def test_result_of_failed_job_raises(client: Client, server: FakeServer, clock: FakeClock) -> None:
    script_job(server, ("failed", 0.4))
    server.routes[("GET", "/v1/jobs/job_1")] = [httpx.Response(200, json=job_body("failed", 0.4, error="nan"))]
    with pytest.raises(JobFailedError, match="job job_1 ended failed: nan") as info:
        client.jobs.create("toy", sampler="rep", n=2).result()
    assert info.value.job.error == "nan"


def test_raw_result_too_early_is_conflict(client: Client, server: FakeServer) -> None:
    server.add("GET", "/v1/jobs/job_1/result", [error_response(409, "conflict", "job job_1 is running")])
    with pytest.raises(ConflictError):
        client.jobs.result("job_1")


def test_cancel(client: Client, server: FakeServer) -> None:
    server.add("DELETE", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("cancelled", 0.2)))
    job = client.jobs.cancel("job_1")
    assert job.state == "cancelled" and job.done


async def test_async_job_wait_and_result(aclient: AsyncClient, server: FakeServer, sleeps: Sleeps) -> None:
    script_job(server, ("queued", 0.0), ("running", 0.5), ("succeeded", 1.0))
    server.add("GET", "/v1/jobs/job_1/result", lambda r: httpx.Response(200, json=sample_body(3)))
    job = await aclient.jobs.create("toy", sampler="rep", n=3)
    batch = await job.result(poll_interval=0.1)
    assert batch.n == 3 and sleeps == [0.1, 0.1]
    server.add("DELETE", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("succeeded", 1.0)))
    assert (await job.cancel()).state == "succeeded"


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, "[----]   0%"), (0.5, "[##--]  50%"), (1.0, "[####] 100%"), (1.7, "[####] 100%"), (-1, "[----]   0%")],
)
def test_format_bar(fraction: float, expected: str) -> None:
    assert format_bar(fraction, width=4) == expected


def test_format_duration() -> None:
    assert (format_duration(62), format_duration(3723)) == ("01:02", "1:02:03")


def test_progress_bar_non_tty_prints_sparse_lines() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, clock=lambda: 0.0)
    for p in [0.0, 0.01, 0.02, 0.05, 0.11, 0.12, 0.5]:
        bar.update(JobStatus(id="j", state="running", progress=p))
    bar.update(JobStatus(id="j", state="succeeded", progress=1.0))
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # 0%, 11%, 50%, succeeded
    assert lines[-1].startswith("j [") and "succeeded" in lines[-1]


def test_progress_bar_tty_redraws_one_line() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream, clock=lambda: 0.0)
    bar.update(JobStatus(id="j", state="running", progress=0.5))
    bar.update(JobStatus(id="j", state="succeeded", progress=1.0))
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
