"""Locating the Prometheus binaries for tests: a skip locally when absent, a failure in CI (``CI=true``)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str) -> str:
    """Absolute path of executable ``name``; skips the test when absent, fails it when ``CI=true``."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name!r} not found on PATH (Debian package 'prometheus' provides prometheus and promtool)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)
