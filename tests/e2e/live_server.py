"""A real ``gansampler-server serve`` process on a free loopback port, for the end-to-end tests."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def server_command() -> list[str]:
    """The installed console script; the module when it is not installed."""
    exe = shutil.which("gansampler-server")
    return [exe] if exe else [sys.executable, "-m", "service.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """Return once ``url``'s ``/readyz`` answers 200; fail with the server's output if it exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(out.decode() if isinstance(out, bytes) else out or "server exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server not ready in time"
        time.sleep(0.2)  # polling a separate process for readiness


@contextmanager
def serve_process(
    models: Path, data_dir: Path, env: Mapping[str, str], cwd: Path, start_timeout_s: float, stop_timeout_s: float
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL, process) once ``/readyz`` answers 200; stop it with SIGINT (killed after
    ``stop_timeout_s``). The process's ``returncode`` is set when the block exits."""
    port = free_port()
    cmd = [*server_command(), "serve", "--models", str(models), "--port", str(port), "--host", "127.0.0.1",
           "--data-dir", str(data_dir), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, start_timeout_s)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
