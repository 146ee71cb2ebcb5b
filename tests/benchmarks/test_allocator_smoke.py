"""The allocator benchmark runs ``speed.py`` under each installed allocator and tabulates every one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import speed_allocator

pytestmark = pytest.mark.slow  # a few speed.py processes: about 20-40 s on 2 shared cores


def test_every_installed_allocator_gets_a_row_and_missing_ones_are_named(tmp_path: Path) -> None:
    out = tmp_path / "alloc.md"
    assert speed_allocator.main(["--models", "gaussians25", "--samplers", "raw", "--batch", "16", "--rounds", "1",
                                 "--out", str(out)]) == 0
    text = out.read_text()
    installed = [n for n, lib in speed_allocator.ALLOCATORS.items()
                 if not lib or speed_allocator.find_library(lib) is not None]
    rows = [ln for ln in text.splitlines() if ln.startswith("| gaussians25 | raw | 16 |")]
    assert [ln.split(" | ")[3] for ln in rows] == installed
    base = next(ln for ln in rows if speed_allocator.BASELINE in ln)
    assert "| 1.00x |" in base  # the baseline against itself
    missing = [n for n in speed_allocator.ALLOCATORS if n not in installed]
    assert f"Not installed, skipped: {', '.join(missing) or 'none'}." in text


def test_find_library_is_none_for_an_absent_library() -> None:
    assert speed_allocator.find_library("libgansampler-does-not-exist.so.0") is None
