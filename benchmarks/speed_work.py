"""What ``speed.py`` times: a sampler through ``run_chains``, its bare-network ceiling, and the reference MH-GAN loop.

Network evaluations ("evals") per chain, and how a sampler's ``n_steps`` maps onto them:

    raw             1 eval, n_steps 0                      (one-shot)
    mh, rep, ddls   n_steps + 1 evals                      (init + one proposal per step); K + 1 per output
    sir             n_steps evals                          (init is candidate 1); N per output
    drs             until every row accepted               rows run masked until the last row accepts; the
                                                           ceiling is the mean number of tries per output

rep and ddls evaluate forward + backward w.r.t. z; the others forward only. mh, drs and sir score ``width`` steps'
proposals per network call (proposal blocks), so their network batch is batch x width; rep and ddls run blocks of
steps with their random numbers drawn in one call (network batch = batch); ``single`` is the same run one step at a
time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from benchmarks._common import DemoModel
from service.samplers.base import GanPair
from service.samplers.block import block_width
from service.samplers.rng import Streams

GRAD_SAMPLERS = frozenset({"rep", "ddls"})
SEED = 1234

BLOCK_SAMPLERS = ("mh", "drs", "sir", "rep", "ddls")
"""Samplers that run several steps per driver iteration (``service.samplers.block``); ``single`` times them one step
at a time."""
WIDE_SAMPLERS = ("mh", "drs", "sir")
"""Those that score a whole block's proposals in one network call (batch x width rows)."""

REFERENCE_BATCH = 64
"""The published MH-GAN code scores each chain's candidates in batches of 64 (10 batches = 640 candidates)."""


@dataclass(frozen=True)
class Work:
    """One (model, sampler, batch) configuration, ready to time.

    sampler, ceiling: the two calls to time against each other.
    evals:            ceiling evaluations per chain per call.
    sampler_fraction, ceiling_fraction: the fraction of one finished output each chain gets per call, so that
                      samples/s = batch * fraction / seconds (1.0 for a full run; evals / evals-per-output for a
                      chain timed shorter than its default length).
    evals_per_output: evals one output costs at the default length (K + 1, N, 1, or DRS's mean tries).
    single, width:    for samplers with proposal blocks (mh, drs, sir), the same run with one step per network
                      call, and the block width of the timed run (its network batch is batch x width).
    """

    sampler: Callable[[], object]
    ceiling: Callable[[], None]
    evals: int
    sampler_fraction: float
    ceiling_fraction: float
    evals_per_output: float
    single: Callable[[], object] | None = None  # the same run one step per network call (block samplers)
    width: int = 1  # steps per network call of the block run (1 for samplers without proposal blocks)


def ceiling_fn(pair: GanPair, batch: int, evals: int, grad: bool, device: torch.device) -> Callable[[], None]:
    """``evals`` x (G + D) forward (and backward w.r.t. z when ``grad``) on one fixed latent batch."""
    z = torch.randn(batch, *pair.latent_shape, device=device)

    def forward() -> None:
        with torch.no_grad():
            for _ in range(evals):
                pair.logit(pair.generator(z))

    def with_grad() -> None:
        with torch.enable_grad():
            for _ in range(evals):
                zg = z.detach().requires_grad_(True)
                logit = pair.logit(pair.generator(zg)).reshape(-1)
                torch.autograd.grad(logit.sum(), zg)

    return with_grad if grad else forward


class Samplers:
    """Builds sampler objects once per (model, sampler) — DRS estimates its max logit on a pilot batch when it is
    built, as a served model does once per pool — with the model's manifest defaults (steps, params, logit_max)."""

    def __init__(self, drs_tries: int | None = None, block_proposals: int | None = None) -> None:
        from service.samplers.block import BLOCK_PROPOSALS

        self._algos: dict[tuple[str, str], Any] = {}
        self.drs_tries = drs_tries  # overrides DRS's max tries per output (quick runs)
        self.block_proposals = BLOCK_PROPOSALS if block_proposals is None else block_proposals

    def algo(self, model: DemoModel, sampler: str) -> Any:
        from service.samplers import SAMPLERS

        key = (model.name, sampler)
        if key not in self._algos:
            entry = SAMPLERS[sampler]
            opts = {k: v for k, v in model.sampler_defaults.get(sampler, {}).items() if k == "logit_max"}
            self._algos[key] = entry.cls(model.pair, entry.options_cls.from_dict(opts))
        return self._algos[key]

    def default_steps(self, model: DemoModel, sampler: str) -> int:
        algo = self.algo(model, sampler)
        if sampler == "drs" and self.drs_tries is not None:
            return self.drs_tries
        return int(model.sampler_defaults.get(sampler, {}).get("steps", algo.default_steps))

    def param_values(self, model: DemoModel, sampler: str) -> dict[str, float]:
        """The model's default numeric params of ``sampler`` (its manifest's ``[samplers.<name>]`` keys)."""
        names = {s.name for s in self.algo(model, sampler).param_specs}
        return {k: float(v) for k, v in model.sampler_defaults.get(sampler, {}).items() if k in names}

    def params(self, model: DemoModel, sampler: str, batch: int, device: torch.device) -> Any:
        values = {k: torch.tensor(v) for k, v in self.param_values(model, sampler).items()}
        return self.algo(model, sampler).make_params(values, batch, device)

    def run_fn(self, model: DemoModel, sampler: str, batch: int, n_steps: int, device: torch.device,
               block_proposals: int | None = None) -> Callable[[], Any]:
        """One request's worth of work through the in-process driver: params, streams and ``run_chains`` (with
        proposal blocks of ``block_proposals`` rows, default ``self.block_proposals``; 1: one step per call)."""
        from service.samplers.driver import run_chains

        algo = self.algo(model, sampler)
        blocks = self.block_proposals if block_proposals is None else block_proposals

        def run() -> Any:
            params = self.params(model, sampler, batch, device)
            return run_chains(algo, Streams.for_request(SEED, batch, device), params, n_steps, block_proposals=blocks)

        return run


def evals_per_output(sampler: str, k: int) -> int:
    if sampler == "raw":
        return 1
    return k if sampler == "sir" else k + 1


def n_steps_for(sampler: str, evals: int) -> int:
    if sampler == "raw":
        return 0
    return evals if sampler == "sir" else evals - 1


def build(samplers: Samplers, model: DemoModel, sampler: str, batch: int, evals: int, device: torch.device) -> Work:
    """The sampler and its ceiling, both doing ``evals`` network evaluations per chain (DRS: see module doc)."""
    grad = sampler in GRAD_SAMPLERS
    k = samplers.default_steps(model, sampler)
    blocks = sampler in BLOCK_SAMPLERS and samplers.block_proposals > 1
    if sampler == "drs":
        run = samplers.run_fn(model, sampler, batch, k, device)
        tries = float(run().extras["tries"].float().mean())
        ceil_evals = max(1, round(tries))
        single = samplers.run_fn(model, sampler, batch, k, device, block_proposals=1) if blocks else None
        width = min(block_width(batch, sample_bytes(model.pair), samplers.block_proposals), k) if blocks else 1
        return Work(run, ceiling_fn(model.pair, batch, ceil_evals, grad, device), ceil_evals, 1.0,
                    ceil_evals / tries, tries, single, width)
    if sampler == "raw":
        evals = 1
    per_output = evals_per_output(sampler, k)
    evals = min(evals, per_output)
    frac = evals / per_output
    n_steps = n_steps_for(sampler, evals)
    single = samplers.run_fn(model, sampler, batch, n_steps, device, block_proposals=1) if blocks else None
    wide = blocks and sampler in WIDE_SAMPLERS
    width = min(block_width(batch, sample_bytes(model.pair), samplers.block_proposals), n_steps) if wide else 1
    return Work(samplers.run_fn(model, sampler, batch, n_steps, device),
                ceiling_fn(model.pair, batch, evals, grad, device), evals, frac, frac, per_output, single, max(1, width))


def sample_bytes(pair: GanPair) -> int:
    """Bytes of one generated sample (sizes proposal blocks as the driver does)."""
    with torch.no_grad():
        x = pair.generator(torch.zeros(1, *pair.latent_shape))
    return int(x.numel() * x.element_size())


def reference_mh_fn(pair: GanPair, k: int, device: torch.device) -> Callable[[], int]:
    """One MH-GAN chain the way the published code runs it: score the chain's K + 1 candidates in batches of 64
    (images and scores copied to numpy), then the sequential accept loop in Python over the K proposals."""
    rng = np.random.RandomState(SEED)

    def chain() -> int:
        scores = []
        with torch.no_grad():
            for start in range(0, k + 1, REFERENCE_BATCH):
                n = min(REFERENCE_BATCH, k + 1 - start)
                x = pair.generator(torch.randn(n, *pair.latent_shape, device=device))
                x.cpu().numpy()  # the reference keeps every candidate image on the host
                scores.append(pair.logit(x).reshape(-1).cpu().numpy())
        s = np.concatenate(scores).astype(np.float64)
        picked, current = 0, float(s[0])
        for i in range(1, k + 1):
            new = float(s[i])
            if math.log(rng.rand()) < new - current:  # log alpha = d~(x') - d~(x_k)
                picked, current = i, new
        return picked

    return chain


class GCounter:
    """Counts the G rows evaluated while ``on``; wraps a model's generator (both timed sides call it alike)."""

    def __init__(self) -> None:
        self.rows = 0
        self.on = False

    def wrap(self, model: DemoModel) -> DemoModel:
        g = model.pair.generator

        def generator(z: torch.Tensor) -> torch.Tensor:
            if self.on:
                self.rows += int(z.shape[0])
            return g(z)

        return replace(model, pair=model.pair._replace(generator=generator))

    def count(self, fn: Callable[[], object]) -> int:
        """G rows evaluated by one call of ``fn``."""
        self.rows, self.on = 0, True
        try:
            fn()
        finally:
            self.on = False
        return self.rows
