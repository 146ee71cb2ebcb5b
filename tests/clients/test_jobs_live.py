"""Keep-alive comments over real HTTP streaming (a uvicorn server on a loopback port; the in-process transports
buffer whole bodies): a job waiting in the queue sends ``: keep-alive`` lines, and the SDK follows the stream
through them to the job's end."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("service.api.app", reason="the server app is not installed")
uvicorn = pytest.importorskip("uvicorn")

from service.api.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.engine.stats import NullSink  # noqa: E402
from tests.api.toy_registry import build  # noqa: E402
from tests.clients.test_cli_server import uvicorn_in_thread  # noqa: E402
from tests.engine.helpers import GATE_TIMEOUT_S, Recorder  # noqa: E402

pytestmark = pytest.mark.slow

HEARTBEAT_S = 0.05
READ_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Recorder]]:
    root = build(tmp_path_factory.mktemp("live-job-models"), onnx=False)
    settings = Settings(models_dir=root, data_dir=tmp_path_factory.mktemp("live-job-data"), max_running_jobs=1,
                        job_heartbeat_s=HEARTBEAT_S, job_progress_interval_s=0.05)
    recorder = Recorder()
    with uvicorn_in_thread(create_app(settings, sink=NullSink(), observer=recorder)) as url:
        yield url, recorder


def test_a_queued_jobs_stream_sends_keep_alives_and_the_sdk_follows_it_to_the_end(
    live_server: tuple[str, Recorder]
) -> None:
    from gansampler import Client

    url, recorder = live_server
    recorder.hold(lambda event: True)  # the first job's first step holds the only job runner's work
    try:
        with Client(url, max_retries=0) as client:
            blocker = client.jobs.create("gauss", sampler="mh", n=2, steps=1000, seed=1)
            assert recorder.held.wait(GATE_TIMEOUT_S)
            waiting = client.jobs.create("gauss", sampler="mh", n=4, steps=50, seed=2)
            assert waiting.state == "queued"

            comments, events = 0, 0
            timeout = httpx.Timeout(READ_TIMEOUT_S)
            with httpx.stream("GET", f"{url}/v1/jobs/{waiting.id}/events", timeout=timeout) as raw:
                for line in raw.iter_lines():
                    comments += line == ": keep-alive"
                    events += line.startswith("event: ")
                    if comments == 3:
                        break
            assert events == 1  # the queued state once, then only comments while nothing changes

            statuses = client.jobs.events(waiting.id)
            assert next(statuses).state == "queued"
            blocker.cancel()
            recorder.release()  # the waiting job starts; the SDK reads past the comments sent meanwhile
            assert [s.state for s in statuses][-1] == "succeeded"
    finally:
        recorder.release()  # never leave the worker held when an assertion failed
