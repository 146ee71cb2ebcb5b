"""``gansampler-server serve`` flags become Settings; process-wide settings are applied by the serve command."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from service.api import serve


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    return p.parse_args(list(argv))


def test_flags_become_settings() -> None:
    s = serve.settings_from_args(_args("--port", "0", "--torch-threads", "1", "--device", "cpu"))
    assert s.port == 0 and s.torch_threads == 1 and s.device == ("cpu",)
    assert serve.settings_from_args(_args()).torch_threads is None


def test_torch_threads_is_applied_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # so that the assertion below sees a change
        serve.apply_process_settings(serve.settings_from_args(_args("--torch-threads", "1")))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="--torch-threads 0"):
        serve.settings_from_args(_args("--torch-threads", "0"))
    monkeypatch.setenv("GANSAMPLER_TORCH_THREADS", "3")
    assert serve.settings_from_args(_args()).torch_threads == 3


class FakeServer:
    def __init__(self, config: Any, seen: dict[str, Any]) -> None:
        self.config = config
        self.seen = seen

    def run(self, sockets: list[socket.socket]) -> None:
        self.seen.update(http=self.config.http, loop=self.config.loop, sockets=sockets,
                         grace=self.config.timeout_graceful_shutdown)


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """``serve.run`` configures the process's logging (uvicorn applies its log_config): undo that for the tests that
    follow, whose caplog reads the service's records through the root logger."""
    names = ("service", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
             for n in names for lg in [logging.getLogger(n)]}
    yield
    for n, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


@pytest.mark.usefixtures("logging_restored")
def test_http_and_loop_flags_are_passed_to_uvicorn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(serve, "graceful_server", lambda config, drain: FakeServer(config, seen))
    monkeypatch.setattr("service.api.app.create_app", lambda settings: SimpleNamespace(state=SimpleNamespace()))
    monkeypatch.setattr(serve, "apply_process_settings", lambda settings: None)
    monkeypatch.setenv("GANSAMPLER_SHUTDOWN_GRACE_S", "7")
    base = ("--port", "0", "--data-dir", str(tmp_path))
    assert serve.run(_args(*base, "--http", "h11", "--loop", "asyncio")) == 0
    assert seen["http"] == "h11" and seen["loop"] == "asyncio"
    assert seen["grace"] == 7 + serve.SHUTDOWN_MARGIN_S
    assert serve.run(_args(*base)) == 0
    assert seen["http"] == "auto" and seen["loop"] == "auto"
    assert seen["sockets"][0].fileno() == -1  # closed once serving ended


def test_a_port_in_use_and_a_data_dir_in_use_are_one_line_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(serve, "graceful_server", lambda config, drain: pytest.fail("serve must stop first"))
    monkeypatch.setattr("service.api.app.create_app", lambda settings: pytest.fail("serve must stop first"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve.run(_args("--port", str(port), "--data-dir", str(tmp_path / "a"))) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "GANSAMPLER_PORT" in err and "in use" in err
    held = serve.lock_data_dir(tmp_path / "b")
    try:
        assert serve.run(_args("--port", "0", "--data-dir", str(tmp_path / "b"))) == 2
        err = capsys.readouterr().err
        assert "GANSAMPLER_DATA_DIR" in err and f"pid {os.getpid()}" in err and str(tmp_path / "b") in err
    finally:
        held.close()
    again = serve.lock_data_dir(tmp_path / "b")  # released with its file: the next server takes it
    again.close()
    (tmp_path / "file").write_text("")
    with pytest.raises(serve.ServeError, match="not usable"):
        serve.lock_data_dir(tmp_path / "file")


def test_an_implementation_that_is_not_installed_is_named(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    import uvicorn

    def never(app: object, **kw: object) -> None:
        raise AssertionError("serve must stop before starting uvicorn")

    monkeypatch.setattr(uvicorn, "run", never)
    monkeypatch.setattr("service.api.app.create_app", lambda settings: object())
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert serve.missing_module(_args("--http", "h11")) is None
    assert serve.run(_args("--loop", "uvloop")) == 2
    err = capsys.readouterr().err
    assert "--loop uvloop" in err and "'uvloop' package is not installed" in err
    with pytest.raises(SystemExit):
        _args("--http", "nghttp2")  # argparse names the choices


def test_a_device_this_host_lacks_is_a_startup_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("serve must stop before starting uvicorn"))
    monkeypatch.setattr("service.api.app.create_app", lambda settings: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert serve.run(_args("--device", "cuda:9")) == 2
    err = capsys.readouterr().err
    assert "'cuda:9'" in err and "GANSAMPLER_DEVICE" in err and "0 CUDA devices" in err
    assert serve.device_problem(("cpu",)) is None
