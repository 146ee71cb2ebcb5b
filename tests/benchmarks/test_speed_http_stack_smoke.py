"""The HTTP-stack benchmark starts one server per stack, serves both, and reports a sane ratio per request kind."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import speed_http_stack

pytestmark = pytest.mark.slow  # two real servers: about 20 s on 2 shared cores


def test_both_stacks_serve_and_every_row_has_a_sane_ratio(tmp_path: Path) -> None:
    out = tmp_path / "stack.md"
    assert speed_http_stack.main(["--samplers", "raw", "mh", "--n", "2", "--steps", "2", "--rounds", "1",
                                  "--out", str(out)]) == 0
    text = out.read_text()
    assert "http stack (uvicorn auto): httptools" in text  # the dependency is installed and picked
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith(("| raw |", "| mh |"))]
    assert [(r[0].strip(), r[1].strip(), r[2].strip()) for r in rows] == [("raw", "2", "0"), ("mh", "2", "2")]
    for r in rows:
        values = [float(c) for c in r[3:6]]
        assert all(math.isfinite(v) and v > 0 for v in values), r
