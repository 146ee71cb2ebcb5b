"""The scaling benchmark's quick grid runs end to end: a table with positive times and a PNG plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import scaling

pytestmark = pytest.mark.slow  # a few seconds on 2 shared cores


def test_quick_grid_writes_table_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "scaling.md", tmp_path / "scaling.png"
    argv = ["--quick", "--models", "digits-dcgan", "--samplers", "mh", "--out", str(out), "--plot", str(png)]
    assert scaling.main(argv) == 0
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith("| digits-dcgan |")]
    q = scaling.QUICK
    assert len(rows) == len(q.ns) + len([s for s in q.steps if (q.fixed_n, s) not in [(n, q.fixed_steps) for n in q.ns]])
    for ln in rows:
        seconds = float(ln.split("|")[6].replace(",", ""))
        assert seconds > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
