"""DRS: discriminator rejection sampling (Azadi et al., ICLR 2019).

Each try draws x ~ p_g and accepts it with probability exp(d~(x) − d~_max), in log space:

    accept iff log u < min(0, d~(x) − d~_max).

With an optimal D and the true max this returns exactly p_d. ``d~_max`` comes from ``DrsOptions.logit_max`` (the
registry's ``[samplers.drs] logit_max``, written by calibrate) or, when None, from a deterministic pilot batch of
``DRS_PILOT_SIZE`` fakes drawn in the constructor with the fixed seed ``DRS_PILOT_SEED``. Proposals scoring above
d~_max are accepted with probability 1 and counted per chain (``above_max``): they mean the max was low.

``gamma_shift`` (off by default) is the paper's shifted acceptance sigmoid(F(x) − gamma) with
F = d~ − d~_max − log(1 − exp(d~ − d~_max − DRS_F_EPS)) and gamma the ``gamma_quantile`` of F on the pilot batch:
more acceptances, biased target, so ``exact()`` is False.

One try per step: ``init`` is the first try, and a row is done when it has accepted or after ``n_steps`` tries in
all (``done`` at t + 1 >= n_steps). A row that runs out returns its last (rejected, i.e. plain p_g) proposal and is
flagged ``exhausted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from service.samplers.base import ChainOutput, GanPair, rows_where
from service.samplers.block import BlockInfo, pick, step_mask
from service.samplers.energy import evaluate
from service.samplers.kernel import DRAW_ACCEPT, DRAW_INIT_ACCEPT, DRAW_PROPOSAL, SamplerBase, accept_test
from service.samplers.options import Flag, Number, Options, option
from service.samplers.rng import DRAW_INIT, Streams, normal

DRS_DEFAULT_STEPS = 640
"""Default max tries per output."""
DRS_PILOT_SIZE = 10_000
DRS_PILOT_SEED = 0
DRS_PILOT_CHUNK = 1_000
DRS_GAMMA_QUANTILE = 0.95
DRS_F_EPS = 1e-6
DRS_LOGIT_LIMIT = 1e6


@dataclass(frozen=True)
class DrsOptions(Options):
    logit_max: float | None = option(
        None,
        Number(-DRS_LOGIT_LIMIT, DRS_LOGIT_LIMIT, optional=True),
        "d~_max; null estimates it on a deterministic pilot batch",
    )
    gamma_shift: bool = option(False, Flag(), "the paper's gamma-shifted acceptance (biased target)")
    gamma_quantile: float = option(
        DRS_GAMMA_QUANTILE, Number(0.0, 1.0), "gamma = this quantile of F on the pilot batch (gamma_shift only)"
    )


class DrsState(NamedTuple):
    """z (B, *latent_shape), x (B, *output_shape), logit (B,), finite (B,) bool: the accepted sample, or the last
    proposal while not accepted. accepted (B,) bool; tries (B,) int64; above_max (B,) int64."""

    z: Tensor
    x: Tensor
    logit: Tensor
    finite: Tensor
    accepted: Tensor
    tries: Tensor
    above_max: Tensor


class DrsInfo(NamedTuple):
    """All (B,): acceptance_rate = this try's acceptance probability, is_accepted, is_nonfinite, logit."""

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_nonfinite: Tensor
    logit: Tensor


def pair_device(pair: GanPair) -> torch.device:
    """The device the generator's parameters live on (CPU for a parameterless function)."""
    params = getattr(pair.generator, "parameters", None)
    if callable(params):
        for p in params():
            return torch.device(p.device)
    if pair.real is not None:
        return pair.real.device
    return torch.device("cpu")


class DrsSampler(SamplerBase):
    name: ClassVar[str] = "drs"
    default_steps: ClassVar[int] = DRS_DEFAULT_STEPS
    stops_early: ClassVar[bool] = True
    options_cls = DrsOptions
    options: DrsOptions

    def __init__(self, pair: GanPair, options: DrsOptions | None = None) -> None:
        super().__init__(pair, options)
        pilot: Tensor | None = None
        if self.options.logit_max is None or self.options.gamma_shift:
            pilot = self.pilot_logits(pair, self.latent_shape)
        if self.options.logit_max is not None:
            self.logit_max = float(self.options.logit_max)
        else:
            assert pilot is not None
            self.logit_max = float(pilot.max()) if pilot.numel() else 0.0
        self.gamma = 0.0
        if self.options.gamma_shift:
            assert pilot is not None
            self.gamma = float(torch.quantile(self._f(pilot).double(), self.options.gamma_quantile))

    @staticmethod
    def pilot_logits(pair: GanPair, latent_shape: tuple[int, ...]) -> Tensor:
        """Finite calibrated logits of ``DRS_PILOT_SIZE`` fakes from the fixed seed ``DRS_PILOT_SEED``, (N,)."""
        dev = pair_device(pair)
        out = []
        for start in range(0, DRS_PILOT_SIZE, DRS_PILOT_CHUNK):
            n = min(DRS_PILOT_CHUNK, DRS_PILOT_SIZE - start)
            s = Streams.for_request(DRS_PILOT_SEED, n, dev, first_chain=start)
            ev = evaluate(pair, normal(s, 0, DRAW_INIT, latent_shape), with_grad=False)
            out.append(ev.logit[ev.finite].float())
        return torch.cat(out)

    def _f(self, logit: Tensor) -> Tensor:
        delta = torch.clamp(logit - self.logit_max, max=0.0)
        return delta - torch.log(-torch.expm1(delta - DRS_F_EPS))

    def _log_p(self, logit: Tensor) -> Tensor:
        if self.options.gamma_shift:
            return F.logsigmoid(self._f(logit) - self.gamma)
        return torch.clamp(logit - self.logit_max, max=0.0)

    def _try(self, streams: Streams, t: Tensor | int, draw: int, u_draw: int) -> tuple[DrsState, Tensor]:
        z = self.prior_draw(streams, t, draw)
        ev = evaluate(self.pair, z, with_grad=False)
        ok = ev.finite
        test = accept_test(self._log_p(ev.logit), ok, torch.ones_like(ok), self.accept_uniform(streams, t, u_draw))
        above = (ok & (ev.logit > self.logit_max)).to(torch.int64)
        one = torch.ones_like(above)
        return DrsState(z, ev.x, ev.logit, ok, test.accept, one, above), test.rate

    def init(self, streams: Streams, params: Any) -> DrsState:
        return self._try(streams, 0, DRAW_INIT, DRAW_INIT_ACCEPT)[0]

    def step(self, state: DrsState, streams: Streams, params: Any, t: Tensor) -> tuple[DrsState, DrsInfo]:
        prop, rate = self._try(streams, t, DRAW_PROPOSAL, DRAW_ACCEPT)
        take = ~state.accepted  # an accepted row keeps its sample
        new = DrsState(
            z=rows_where(take, prop.z, state.z),
            x=rows_where(take, prop.x, state.x),
            logit=torch.where(take, prop.logit, state.logit),
            finite=torch.where(take, prop.finite, state.finite),
            accepted=state.accepted | (take & prop.accepted),
            tries=state.tries + take.to(torch.int64),
            above_max=state.above_max + prop.above_max * take.to(torch.int64),
        )
        info = DrsInfo(rate, take & prop.accepted, take & ~prop.finite, new.logit)
        return new, info

    def supports_blocks(self) -> bool:
        return True

    def block_limit(self) -> int | None:
        return None  # one network call per block, however wide

    def steps_left(self, state: DrsState, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        """Tries left after ``init``'s first: none once accepted (the ``done`` rule)."""
        return torch.where(state.accepted, 0, (n_steps - 1 - t).clamp(min=0))

    def step_block(
        self, state: DrsState, streams: Streams, params: Any, t: Tensor, steps: Tensor, width: int
    ) -> tuple[DrsState, BlockInfo]:
        """Up to ``steps`` (B,) tries per row with one G + D call; a row stops at its first acceptance.

        Tries are independent, so every try's accept test runs at once on (B, W); the tries a row takes are the
        prefix up to and including its first accepted one (no loop at all).
        """
        cand = self.candidates(streams, t, width)
        on = step_mask(steps, width) & ~state.accepted[:, None]
        test = accept_test(self._log_p(cand.logit), cand.finite, torch.ones_like(cand.finite), cand.u)
        hit = (test.accept & on).to(torch.int64)
        take = on & ((torch.cumsum(hit, 1) - hit) == 0)  # no earlier try of this block accepted
        n_take = take.sum(1)
        sel = n_take - 1  # the last try taken: the accepted one, or the last rejected one
        new = DrsState(
            z=pick(sel, cand.z, state.z),
            x=pick(sel, cand.x, state.x),
            logit=pick(sel, cand.logit, state.logit),
            finite=pick(sel, cand.finite, state.finite),
            accepted=state.accepted | (hit.bool() & take).any(1),
            tries=state.tries + n_take,
            above_max=state.above_max + (take & cand.finite & (cand.logit > self.logit_max)).sum(1),
        )
        rates = torch.where(take, test.rate, 0.0).float()
        info = BlockInfo(
            steps=n_take,
            accepted=(hit.bool() & take).sum(1),
            nonfinite=(take & ~cand.finite).sum(1),
            logit=new.logit,
            rates=rates,
        )
        return new, info

    def done(self, state: DrsState, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        return state.accepted | (t + 1 >= n_steps)

    def output(self, state: DrsState) -> ChainOutput:
        return ChainOutput(state.z, state.x, state.logit)

    def chain_extras(self, state: DrsState) -> dict[str, Tensor]:
        return {
            "accepted": state.accepted,
            "exhausted": ~state.accepted,
            "tries": state.tries,
            "above_max": state.above_max,
            "logit_max": torch.full_like(state.logit, self.logit_max),
        }

    def exact(self) -> bool:
        return not self.options.gamma_shift
