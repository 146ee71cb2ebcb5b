"""Test helpers: the Prometheus binaries (a skip locally when absent, a failure with ``CI=true``) and a feed of
stats objects that touches every series."""

from __future__ import annotations

import os
import shutil

import pytest

from service.engine.stats import ChainsFinished, Gauges, RequestStats, StatsSink, StepStats

MODEL = "ring@1"
ROUTE = "/v1/samples/{sampler}"


def require_binary(name: str) -> str:
    """Absolute path of executable ``name``; skips the test when absent, fails it when ``CI=true``."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name!r} not found on PATH (Debian package 'prometheus' provides prometheus and promtool)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


def feed(sink: StatsSink) -> None:
    """One call of every StatsSink method, so that every series of the sink has at least one sample."""
    sink.record_step(StepStats(MODEL, "mh", "cpu", rows=8, proposals=8, accepted=3, nonfinite=1, seconds=0.004,
                               chain_steps=64))
    sink.record_step(StepStats(MODEL, "mh", "cpu", rows=4, proposals=4, accepted=4, nonfinite=0, seconds=0.002,
                               chain_steps=4))
    sink.record_chains(
        ChainsFinished(MODEL, "mh", acceptance_rates=(0.12, 0.5, 0.97), logit_initial=(-1.2, -0.7, 0.1),
                       logit_final=(0.4, 0.6, float("nan")), samples=3)
    )
    sink.record_request(RequestStats(ROUTE, 200, seconds=0.3, queue_seconds=0.01))
    sink.record_request(RequestStats(ROUTE, 429, seconds=0.001))
    sink.record_model_load(MODEL, seconds=0.8, warmup_seconds=0.2)
    sink.set_gauges(Gauges(queue_depth=5, queued_chain_steps=640, active_chains=12,
                           device_memory_bytes={("cpu", "models"): 123456}, models_ready={MODEL: True},
                           jobs={"running": 2}, pool_max_rows={(MODEL, "mh", "cpu"): 4096}))
