"""Starting a real ``gansampler-server serve`` for the HTTP benchmarks (no torch import here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 180.0
"""How long a server may take to load its models and warm up before the benchmark gives up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(models_dir: Path, data_dir: Path, threads: int | None = None,
                 device: str | None = None, extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """``gansampler-server serve`` on a free loopback port; returns (process, base URL) once ``/readyz`` answers 200.

    ``threads`` sets the server's intra-op threads (OMP_NUM_THREADS / MKL_NUM_THREADS), to match the caller's;
    ``device`` the devices it serves on (``GANSAMPLER_DEVICE``, e.g. ``cuda:0``; default: the server's);
    ``extra_args`` more ``serve`` flags (e.g. ``("--http", "h11")``).
    """
    import httpx

    port = free_port()
    exe = shutil.which("gansampler-server")
    cmd = [exe] if exe else [sys.executable, "-m", "service.cli"]
    cmd += ["serve", "--models", str(models_dir), "--port", str(port), "--data-dir", str(data_dir),
            "--log-level", "warning", *extra_args]
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if device:
        env["GANSAMPLER_DEVICE"] = device
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Terminate a server from :func:`start_server`, killing it if it does not exit within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
