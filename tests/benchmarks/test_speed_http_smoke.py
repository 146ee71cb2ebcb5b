"""The HTTP benchmark runs end to end against a real server on the device it is given, and reports sane numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import speed_http

pytestmark = pytest.mark.slow  # a real server: about 10-20 s on 2 shared cores


def test_both_sides_run_on_the_given_device_and_the_table_has_a_sane_ratio_per_sampler(tmp_path: Path) -> None:
    out = tmp_path / "http.md"
    assert speed_http.main(["--models", "gaussians25", "--samplers", "raw", "mh", "--steps", "4", "--rounds", "1",
                            "--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert "device: cpu" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| gaussians25 |")]
    assert [(r[1].strip(), r[3].strip()) for r in rows] == [("raw", "0"), ("mh", "4")]
    for r in rows:
        in_process, http, compute_ms, wall_ms, ratio = (float(c.replace(",", "")) for c in r[4:9])
        assert all(math.isfinite(v) and v > 0 for v in (in_process, http, compute_ms, wall_ms, ratio)), r
        assert compute_ms <= wall_ms  # the server's compute is part of the client's wall time
