"""Building and running any sampler the same way, so tests never branch on a sampler's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from service.samplers import SAMPLERS, GanPair, Streams
from service.samplers.driver import ChainRun, run_chains, steps_values

NAMES = sorted(SAMPLERS)


def make(name: str, pair: GanPair, options: Mapping[str, Any] | None = None) -> Any:
    entry = SAMPLERS[name]
    return entry.cls(pair, entry.options_cls.from_dict(options or {}))


def params_for(
    algo: Any, n: int, steps: int | torch.Tensor, values: Mapping[str, float] | None = None, device: str = "cpu"
) -> Any:
    vals = {k: torch.tensor(float(v)) for k, v in (values or {}).items()}
    return algo.make_params(steps_values(vals, steps, n, device), n, device)


def run(
    algo: Any,
    seed: int,
    n: int,
    steps: int,
    values: Mapping[str, float] | None = None,
    trace_every: int = 0,
    device: str = "cpu",
) -> ChainRun:
    streams = Streams.for_request(seed, n, device)
    return run_chains(algo, streams, params_for(algo, n, steps, values, device), steps, trace_every)


def run_streams(
    algo: Any, streams: Streams, steps: int | torch.Tensor, values: Mapping[str, float] | None = None
) -> ChainRun:
    n = len(streams)
    return run_chains(algo, streams, params_for(algo, n, steps, values, str(streams.seed.device)), steps)
