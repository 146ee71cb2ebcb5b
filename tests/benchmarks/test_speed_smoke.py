"""The speed benchmark's quick mode runs end to end and reports sane numbers (finite, positive ratios)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import speed

pytestmark = pytest.mark.slow  # about 5-20 s on 2 shared cores


def test_quick_mode_writes_a_table_with_sane_numbers(tmp_path: Path) -> None:
    out, js = tmp_path / "speed.md", tmp_path / "speed.json"
    # generous time limits: on a loaded machine the quick limits would skip configurations this test checks
    assert speed.main(["--quick", "--models", "gaussians25", "--max-call-s", "60", "--max-eval-s", "10",
                       "--out", str(out), "--json", str(js)]) == 0

    rows = json.loads(js.read_text())["rows"]
    assert {r["sampler"] for r in rows} == set(speed.SAMPLER_NAMES)
    assert {r["batch"] for r in rows} == set(speed.QUICK_BATCHES)
    for r in rows:
        for key in ("ratio", "sampler_samples_s", "ceiling_samples_s"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["sampler"], r["batch"], key, r[key])
        # the sampler evaluates G at least as often as its ceiling (no work skipped) and, apart from DRS (whose
        # batch runs until its last row accepts), not grossly more
        assert r["g_evals"] >= min(r["evals"], r["evals_per_output"]) - 1e-9, r
        assert r["sampler"] == "drs" or r["g_evals"] <= 2 * r["evals"] + 1, r
    mh = [r for r in rows if r["sampler"] == "mh"]
    assert all(r["reference_samples_s"] > 0 for r in mh)

    text = out.read_text()
    assert "| sampler | batch |" in text and "## Machine" in text and "torch:" in text
    assert text.count("\n| mh |") == len(speed.QUICK_BATCHES)


def test_ratio_is_sampler_over_ceiling_throughput() -> None:
    row = speed.Row(
        model="m", sampler="mh", batch=4, evals=10, inner=1, evals_per_output=641, g_evals=10,
        sampler_s=2.0, ceiling_s=1.0, ratio=0.5, sampler_samples_s=4 * 10 / 641 / 2.0,
        ceiling_samples_s=4 * 10 / 641 / 1.0, reference_samples_s=0.01, wide_ceiling_samples_s=0.2,
    )
    assert row.speedup == pytest.approx(row.sampler_samples_s / 0.01)
    assert row.ceiling_speedup == pytest.approx(row.ceiling_samples_s / 0.01)
    assert row.block_ceiling_speedup == pytest.approx(20.0)
    table = speed.summary([row], batch=4)
    assert "| m | 0.50 | 3.1x | 20.0x |" in table
    assert speed.Row(**{**row.__dict__, "wide_ceiling_samples_s": None}).block_ceiling_speedup is None
