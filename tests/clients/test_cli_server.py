"""The ``gansampler`` CLI as users run it (a subprocess) against a real uvicorn server on a loopback port.

The first group serves the toy registry from an in-process uvicorn thread; the slow group starts
``gansampler-server serve`` on the shipped demo models in ``models/``. Every CLI call is a fresh interpreter, so the
whole module is marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("service.api.app", reason="the server app is not installed")
uvicorn = pytest.importorskip("uvicorn")

from service.api.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.engine.stats import NullSink  # noqa: E402
from tests.api.toy_registry import build  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEMO_MODELS = REPO / "models"
READY_TIMEOUT_S = 120.0
CLI_TIMEOUT_S = 120.0
PROGRESS_INTERVAL_S = 0.05  # frequent job progress events, so a short job streams several


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_ready(url: str, timeout_s: float = READY_TIMEOUT_S, process: subprocess.Popen | None = None) -> None:
    """Poll ``/readyz`` until 200; fail with the last answer after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            response = httpx.get(f"{url}/readyz", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout_s} s: {last}")


@contextmanager
def uvicorn_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread on a free loopback port; yields its URL once ready."""
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_ready(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()



def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("gansampler")
    command = [exe] if exe else [sys.executable, "-m", "gansampler"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GANSAMPLER_")}
    full_env.update(env or {})
    return subprocess.run([*command, *argv], capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=full_env)


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = build(tmp_path_factory.mktemp("cli-models"), onnx=False)
    settings = Settings(
        models_dir=root, data_dir=tmp_path_factory.mktemp("cli-data"), job_progress_interval_s=PROGRESS_INTERVAL_S
    )
    with uvicorn_in_thread(create_app(settings, sink=NullSink())) as url:
        yield url


def test_models_and_env_url(toy_server: str) -> None:
    result = cli("models", env={"GANSAMPLER_URL": toy_server})
    assert result.returncode == 0, result.stderr
    assert "gauss@1" in result.stdout and "ready" in result.stdout


def test_sample_images(toy_server: str, tmp_path: Path) -> None:
    out = tmp_path / "img"
    result = cli(
        "--url",
        toy_server,
        "sample",
        "image",
        "--sampler",
        "rep",
        "-n",
        "4",
        "--steps",
        "5",
        "--seed",
        "1",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["diagnostics.json", "grid.png", *[f"sample_000{i}.png" for i in range(4)]]
    meta = json.loads((out / "diagnostics.json").read_text())
    assert meta["model"] == "image@1" and meta["seed"] == 1 and meta["shape"] == [1, 4, 4]
    assert "wrote 4 samples" in result.stdout


def test_sample_vector_with_params(toy_server: str, tmp_path: Path) -> None:
    out = tmp_path / "vec"
    result = cli(
        "sample",
        "gauss",
        "--url",
        toy_server,
        "--sampler",
        "rep",
        "-n",
        "8",
        "--steps",
        "10",
        "--param",
        "step_size=0.05",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert np.load(out / "samples.npy").shape == (8, 1)


def test_validation_error_message_and_exit_code(toy_server: str) -> None:
    result = cli("--url", toy_server, "sample", "gauss", "--sampler", "rep", "-n", "2", "--param", "step_size=5")
    assert result.returncode == 1
    assert "422 invalid_request: step_size must be in [1e-06, 1.0], got 5.0 (param: params.step_size)" in result.stderr
    assert "request-id:" in result.stderr


def test_job_create_wait_result(toy_server: str, tmp_path: Path) -> None:
    result = cli(
        "--url",
        toy_server,
        "job",
        "create",
        "gauss",
        "--sampler",
        "mh",
        "-n",
        "4",
        "--steps",
        "40",
        "--seed",
        "5",
        "--wait",
        "--poll-interval",
        "0.05",
        "-o",
        str(tmp_path / "job"),
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.splitlines()[0]
    assert job_id in result.stderr and "100%" in result.stderr  # the progress bar
    assert np.load(tmp_path / "job" / "samples.npy").shape == (4, 1)
    status = cli("--url", toy_server, "job", "status", job_id, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "succeeded"
    events = cli("--url", toy_server, "job", "events", job_id)
    assert json.loads(events.stdout.splitlines()[-1])["state"] == "succeeded"


def test_unreachable_server(tmp_path: Path) -> None:
    sock = free_socket()  # bound, never listening: connections are refused
    try:
        result = cli("--url", f"http://127.0.0.1:{sock.getsockname()[1]}", "--max-retries", "0", "models")
    finally:
        sock.close()
    assert result.returncode == 3
    assert "cannot reach" in result.stderr


# --- the shipped demo server ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("service.api.serve", reason="gansampler-server serve is not installed")
    if not (DEMO_MODELS / "digits-dcgan" / "1" / "model.toml").exists():
        pytest.skip("the demo models are not in models/")
    server_exe = shutil.which("gansampler-server")
    command = [server_exe] if server_exe else [sys.executable, "-m", "service.cli"]
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANSAMPLER_")}
    env.update(
        {
            "GANSAMPLER_MODELS_DIR": str(DEMO_MODELS),
            "GANSAMPLER_PORT": str(port),
            "GANSAMPLER_HOST": "127.0.0.1",
            "GANSAMPLER_DATA_DIR": str(tmp_path_factory.mktemp("demo-data")),
        }
    )
    log = tmp_path_factory.mktemp("demo-log") / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen([*command, "serve"], cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, process=process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-2000:]}") from None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_demo_server_cli(demo_server: str, tmp_path: Path) -> None:
    listing = cli("--url", demo_server, "models")
    assert listing.returncode == 0, listing.stderr
    assert "digits-dcgan@1" in listing.stdout
    out = tmp_path / "digits"
    result = cli(
        "--url",
        demo_server,
        "sample",
        "digits-dcgan",
        "--sampler",
        "rep",
        "-n",
        "16",
        "--steps",
        "50",
        "--seed",
        "7",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("sample_*.png"))) == 16 and (out / "grid.png").exists()
    vec = tmp_path / "g25"
    result = cli(
        "--url", demo_server, "sample", "gaussians25", "--sampler", "mh", "-n", "64", "--steps", "50", "-o", str(vec)
    )
    assert result.returncode == 0, result.stderr
    assert np.load(vec / "samples.npy").shape == (64, 2)


def test_sdk_follows_a_live_event_stream(toy_server: str) -> None:
    """Real HTTP streaming (the in-process transports buffer whole bodies): events arrive while the job runs."""
    from gansampler import AsyncClient, Client

    with Client(toy_server, max_retries=0) as client:
        # long enough to span several progress intervals even at 4096 chain-steps per engine step
        job = client.jobs.create("gauss", sampler="mh", n=64, steps=20_000, seed=1)
        seen = list(job.events())
    assert seen[-1].state == "succeeded" and seen[-1].progress == 1.0
    progress = [s.progress for s in seen]
    assert progress == sorted(progress)
    assert any(0.0 < p < 1.0 for p in progress), f"no intermediate progress event: {progress}"

    async def follow() -> list[str]:
        async with AsyncClient(toy_server, max_retries=0) as aclient:
            ajob = await aclient.jobs.create("gauss", sampler="mh", n=4, steps=100, seed=2)
            return [s.state async for s in ajob.events()]

    import asyncio

    assert asyncio.run(follow())[-1] == "succeeded"
