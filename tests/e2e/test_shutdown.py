"""SIGTERM to a real ``gansampler-server serve`` with work in flight (what a rolling deploy does): requests past the
grace get a JSON 503 with Retry-After, a running job is queued again and its event stream ends, the process exits 0
soon after the grace, the log holds no traceback, and the next server on the data dir runs the job again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/e2e has no __init__.py
    sys.path.insert(0, str(ROOT))

from tests.e2e.live_server import free_port, server_command, wait_ready  # noqa: E402

pytestmark = pytest.mark.slow

GRACE_S = 2.0
START_TIMEOUT_S = 180.0
EXIT_WITHIN_S = GRACE_S + 8.0  # the grace, the last step of each pool, and the process's own exit
LONG = {"model": "digits-dcgan", "n": 256, "steps": 640}  # about 10 s of mh on 2 cores: well past the grace
JOB = {"sampler": "mh", "model": "gaussians25", "n": 4096, "steps": 20000}


def start_server(port: int, data_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*server_command(), "serve", "--port", str(port), "--data-dir", str(data_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_answers_running_work_and_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GANSAMPLER_")}, "PYTHONPATH": str(ROOT),
           "GANSAMPLER_SHUTDOWN_GRACE_S": str(GRACE_S)}
    proc = start_server(port, tmp_path / "data", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, START_TIMEOUT_S)
        seen: dict[str, Any] = {}
        job = httpx.post(f"{url}/v1/jobs", json=JOB, timeout=30).json()["id"]
        events_open = threading.Event()

        def request() -> None:
            seen["request"] = httpx.post(f"{url}/v1/samples/mh", json=LONG, timeout=120)

        def events() -> None:
            with httpx.stream("GET", f"{url}/v1/jobs/{job}/events", timeout=120) as r:
                events_open.set()
                seen["states"] = [json.loads(line[5:])["state"] for line in r.iter_lines() if line.startswith("data:")]

        threads = [threading.Thread(target=request), threading.Thread(target=events)]
        for t in threads:
            t.start()
        assert events_open.wait(30)
        time.sleep(1.0)  # the long request is running
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(EXIT_WITHIN_S + 30)
        rc = proc.wait(EXIT_WITHIN_S + 30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read() if proc.stdout else ""
    r = seen["request"]
    assert r.status_code == 503 and r.headers["retry-after"] and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["message"] == "the sampling engine is shutting down"
    assert seen["states"][-1] == "queued"
    assert rc == 0, log[-3000:]
    assert took < EXIT_WITHIN_S, (took, log[-3000:])
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]
    # the log says what was served and how it ended, each line with a time, a level and the request id
    assert "INFO service.api.app: ready: 3 of 3 models" in log
    assert "WARNING service.api.deps: shutting down:" in log
    assert re.search(r"INFO service\.access: POST /v1/samples/mh 503 [\d.]+ ms request-id=\w+", log), log[-3000:]
    assert re.search(rf"INFO service\.engine\.jobs: job {job} queued again", log), log[-3000:]

    # the next server on the data dir starts the job again (a first attempt: the shutdown was not the job's fault)
    proc = start_server(port, tmp_path / "data", env)
    try:
        wait_ready(url, proc, START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        status = httpx.get(f"{url}/v1/jobs/{job}", timeout=30).json()
        while status["state"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.1)  # polling a real server's job: no event to wait on across processes
            status = httpx.get(f"{url}/v1/jobs/{job}", timeout=30).json()
        assert (status["state"], status["attempts"]) == ("running", 1), status
        assert httpx.delete(f"{url}/v1/jobs/{job}", timeout=30).json()["state"] == "cancelled"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(EXIT_WITHIN_S + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
