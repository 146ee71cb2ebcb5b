"""Fixtures: toy registries in tmp_path (tiny MLP pairs from tests.registry.toy_arch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.helpers import make_version


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "models"
    r.mkdir()
    return r


@pytest.fixture
def toy(root: Path) -> Path:
    """One safetensors/safetensors logit model ``toy@1`` with a holdout; returns its version directory."""
    return make_version(root)
