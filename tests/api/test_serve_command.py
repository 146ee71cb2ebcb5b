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
