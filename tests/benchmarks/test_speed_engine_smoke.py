"""The engine benchmark times a request through a chain pool against run_chains, and both give the same chains."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks import speed_engine
from benchmarks._common import registry_model
from benchmarks.speed_work import Samplers

pytestmark = pytest.mark.slow  # a few seconds on 2 shared cores


@pytest.mark.parametrize("sampler", ["raw", "mh", "rep"])
def test_the_pool_request_draws_the_samples_run_chains_draws(sampler: str) -> None:
    # the two timed calls must do the same work: the same chains, bit for bit
    dev = torch.device("cpu")
    model = registry_model("gaussians25", dev)
    assert model is not None
    samplers = Samplers()
    steps = 0 if sampler == "raw" else 8
    driver = samplers.run_fn(model, sampler, 16, steps, dev)()
    pooled = speed_engine.pool_fn(samplers, model, sampler, 16, steps, dev)()
    assert torch.equal(driver.output.x, pooled.output.x)
    assert torch.equal(driver.output.logit, pooled.output.logit)


def test_the_table_has_a_sane_row_per_sampler(tmp_path: Path) -> None:
    out = tmp_path / "engine.md"
    assert speed_engine.main(["--models", "gaussians25", "--samplers", "raw", "mh", "--batch", "32", "--steps", "4",
                              "--rounds", "3", "--target-s", "0.005", "--out", str(out)]) == 0
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| gaussians25 |")]
    assert [r[1].strip() for r in rows] == ["raw", "mh"]
    for r in rows:
        driver_ms, pool_ms, ratio = (float(r[i]) for i in (5, 6, 8))
        assert all(math.isfinite(v) and v > 0 for v in (driver_ms, pool_ms, ratio)), r
