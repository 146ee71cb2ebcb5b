"""``gansampler-server serve`` flags become Settings; process-wide settings are applied by the serve command."""

from __future__ import annotations

import argparse

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
    with pytest.raises(ValueError, match="torch_threads"):
        serve.settings_from_args(_args("--torch-threads", "0"))
    monkeypatch.setenv("GANSAMPLER_TORCH_THREADS", "3")
    assert serve.settings_from_args(_args()).torch_threads == 3


def test_http_and_loop_flags_are_passed_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr("service.api.app.create_app", lambda settings: object())
    monkeypatch.setattr(serve, "apply_process_settings", lambda settings: None)
    assert serve.run(_args("--http", "h11", "--loop", "asyncio")) == 0
    assert seen["http"] == "h11" and seen["loop"] == "asyncio"
    assert serve.run(_args()) == 0
    assert seen["http"] == "auto" and seen["loop"] == "auto"


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
