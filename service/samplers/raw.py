"""raw: x = G(z), z ~ p0 — the baseline every exact sampler reduces to when d~ is constant.

A one-shot kernel: ``init`` draws the sample and every row is done at once. ``step`` (should a caller run one)
draws a fresh independent sample, always "accepted".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import ChainOutput
from service.samplers.energy import evaluate
from service.samplers.kernel import DRAW_PROPOSAL, SamplerBase
from service.samplers.options import Options
from service.samplers.rng import Streams

RAW_DEFAULT_STEPS = 0


@dataclass(frozen=True)
class RawOptions(Options):
    """raw has no options."""


class RawState(NamedTuple):
    """z (B, *latent_shape), x (B, *output_shape), logit (B,) d~(x), finite (B,) bool."""

    z: Tensor
    x: Tensor
    logit: Tensor
    finite: Tensor


class RawInfo(NamedTuple):
    """All (B,): acceptance_rate 1.0, is_accepted True, is_nonfinite, logit of the new sample."""

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_nonfinite: Tensor
    logit: Tensor


class RawSampler(SamplerBase):
    name: ClassVar[str] = "raw"
    default_steps: ClassVar[int] = RAW_DEFAULT_STEPS
    options_cls = RawOptions

    def _draw(self, streams: Streams, t: Tensor | int, draw: int) -> RawState:
        z = self.prior_draw(streams, t, draw)
        ev = evaluate(self.pair, z, with_grad=False)
        return RawState(z, ev.x, ev.logit, ev.finite)

    def init(self, streams: Streams, params: Any) -> RawState:
        return self._draw(streams, 0, 0)

    def step(self, state: RawState, streams: Streams, params: Any, t: Tensor) -> tuple[RawState, RawInfo]:
        new = self._draw(streams, t, DRAW_PROPOSAL)
        ones = torch.ones_like(new.logit)
        return new, RawInfo(ones, new.finite, ~new.finite, new.logit)

    def supports_blocks(self) -> bool:
        """False: a one-shot kernel has no steps to run."""
        return False

    def done(self, state: RawState, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        return torch.ones_like(t, dtype=torch.bool)

    def output(self, state: RawState) -> ChainOutput:
        return ChainOutput(state.z, state.x, state.logit)

    def exact(self) -> bool:
        """False: raw samples p_g, not p_d."""
        return False
