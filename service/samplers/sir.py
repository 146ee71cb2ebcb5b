"""SIR: sampling-importance-resampling with weights w ∝ exp(d~) (the BGAN / importance-weighted-GAN weights).

N candidates x_i = G(z_i), z_i ~ p0, weights w_i = exp(d~(x_i)); the output is one candidate drawn with probability
w_i / Σ_j w_j (exact as N → ∞ when D is optimal).

Streaming weighted reservoir sampling, so each step is one batched G + D forward and memory is O(1) in N: candidate
t replaces the kept one with probability w_t / W_t, W_t = Σ_{i≤t} w_i. By induction the kept candidate after t
steps is candidate i with probability w_i / W_t, i.e. exactly the categorical draw over the N candidates. All in log
space: replace iff log u < log w_t − log W_t. A non-finite candidate has weight 0 (flagged, never kept unless no
candidate is finite).

``init`` is candidate 1, each step adds one: a row is done after ``n_steps`` candidates (``done`` at
t + 1 >= n_steps). Per chain the state keeps log Σw, log Σw² and log max w, giving ESS = (Σw)² / Σw² and the
normalised max weight (``chain_extras``: ``ess``, ``max_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import ChainOutput, logaddexp, rows_where
from service.samplers.block import BlockInfo, pick, step_mask
from service.samplers.energy import evaluate
from service.samplers.kernel import DRAW_PROPOSAL, SamplerBase
from service.samplers.options import Options
from service.samplers.rng import Streams

SIR_DEFAULT_STEPS = 640
"""Default N candidates per output."""


@dataclass(frozen=True)
class SirOptions(Options):
    """sir has no options."""


class SirState(NamedTuple):
    """The kept candidate z (B, *latent_shape), x (B, *output_shape), logit (B,), finite (B,) bool; and per row
    log_w_sum = log Σw, log_w2_sum = log Σw², log_w_max = log max w (all (B,), -inf while no finite candidate)."""

    z: Tensor
    x: Tensor
    logit: Tensor
    finite: Tensor
    log_w_sum: Tensor
    log_w2_sum: Tensor
    log_w_max: Tensor


class SirInfo(NamedTuple):
    """All (B,): acceptance_rate = w_t / W_t (probability the candidate replaced the kept one), is_accepted
    (it did), is_nonfinite (the candidate was non-finite), logit of the kept candidate."""

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_nonfinite: Tensor
    logit: Tensor


def _log_weight(logit: Tensor, finite: Tensor) -> Tensor:
    return torch.where(finite, logit.float(), torch.full_like(logit, float("-inf"), dtype=torch.float32))


class SirSampler(SamplerBase):
    name: ClassVar[str] = "sir"
    default_steps: ClassVar[int] = SIR_DEFAULT_STEPS
    options_cls = SirOptions

    def init(self, streams: Streams, params: Any) -> SirState:
        z = self.init_latent(streams)
        ev = evaluate(self.pair, z, with_grad=False)
        lw = _log_weight(ev.logit, ev.finite)
        return SirState(z, ev.x, ev.logit, ev.finite, lw, 2.0 * lw, lw)

    def step(self, state: SirState, streams: Streams, params: Any, t: Tensor) -> tuple[SirState, SirInfo]:
        z = self.prior_draw(streams, t, DRAW_PROPOSAL)
        ev = evaluate(self.pair, z, with_grad=False)
        lw = _log_weight(ev.logit, ev.finite)
        lws = logaddexp(state.log_w_sum, lw)
        log_p = torch.nan_to_num(lw - lws, nan=float("-inf"))  # -inf - -inf: no finite candidate yet
        # A finite candidate replaces a non-finite kept one for sure (its weight is the first non-zero).
        log_p = torch.where(ev.finite & ~state.finite, torch.zeros_like(log_p), log_p)
        take = torch.log(self.accept_uniform(streams, t)) < log_p
        new = SirState(
            z=rows_where(take, z, state.z),
            x=rows_where(take, ev.x, state.x),
            logit=torch.where(take, ev.logit, state.logit),
            finite=torch.where(take, ev.finite, state.finite),
            log_w_sum=lws,
            log_w2_sum=logaddexp(state.log_w2_sum, 2.0 * lw),
            log_w_max=torch.maximum(state.log_w_max, lw),
        )
        return new, SirInfo(torch.exp(log_p), take, ~ev.finite, new.logit)

    def supports_blocks(self) -> bool:
        return True

    def block_limit(self) -> int | None:
        return None  # one network call per block, however wide

    def steps_left(self, state: SirState, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        """Candidates left after ``init``'s first (the ``done`` rule ``t + 1 >= n_steps``)."""
        return (n_steps - 1 - t).clamp(min=0)

    def step_block(
        self, state: SirState, streams: Streams, params: Any, t: Tensor, steps: Tensor, width: int
    ) -> tuple[SirState, BlockInfo]:
        """``steps`` (B,) candidates per row with one G + D call, the same reservoir as :meth:`step` candidate by
        candidate, bit for bit. A step the row does not run has weight 0, which leaves the sums and the kept candidate
        unchanged.

        Only the running log-sums are sequential (they must add in step order); both run in one loop as a (B, 2)
        pair, then every candidate's selection probability and draw are computed at once: 13 small kernels per
        candidate instead of 32. The kept candidate's finiteness needs no loop either: a finite candidate is taken
        for sure while none is kept (its probability is 1) and a non-finite one never is (weight 0), so before
        candidate j a finite one is kept exactly when the state's was or some earlier candidate was finite.
        """
        cand = self.candidates(streams, t, width)
        on = step_mask(steps, width)
        fin = cand.finite & on
        lw = _log_weight(cand.logit, fin)
        acc = torch.stack((state.log_w_sum, state.log_w2_sum), 1)
        inc = torch.stack((lw, 2.0 * lw), 2)  # (B, W, 2): the weight and its square, in log space
        sums = []
        for j in range(width):
            acc = logaddexp(acc, inc[:, j])
            sums.append(acc)
        lws = torch.stack(sums, 1)[:, :, 0]  # (B, W) Σw after each candidate
        log_p = torch.nan_to_num(lw - lws, nan=float("-inf"))  # -inf - -inf: no finite candidate yet
        earlier = (torch.cumsum(fin, 1) - fin.to(torch.int64)) > 0  # a finite candidate before j
        kept_before = state.finite[:, None] | earlier
        log_p = torch.where(fin & ~kept_before, torch.zeros_like(log_p), log_p)
        takes = torch.log(cand.u) < log_p
        index = torch.arange(width, device=steps.device)
        sel = torch.where(takes, index, -1).amax(1)  # the last candidate taken, -1: none
        rates = torch.where(on, torch.exp(log_p), 0.0).float()
        logit = pick(sel, cand.logit, state.logit)
        new = SirState(
            z=pick(sel, cand.z, state.z),
            x=pick(sel, cand.x, state.x),
            logit=logit,
            finite=state.finite | fin.any(1),
            log_w_sum=acc[:, 0],
            log_w2_sum=acc[:, 1],
            log_w_max=torch.maximum(state.log_w_max, lw.max(1).values),
        )
        info = BlockInfo(
            steps=steps,
            accepted=takes.sum(1),
            nonfinite=(on & ~cand.finite).sum(1),
            logit=logit,
            rates=rates,
        )
        return new, info

    def done(self, state: SirState, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        return t + 1 >= n_steps

    def output(self, state: SirState) -> ChainOutput:
        return ChainOutput(state.z, state.x, state.logit)

    def chain_extras(self, state: SirState) -> dict[str, Tensor]:
        """ess = (Σw)²/Σw² in [1, N]; max_weight = max w / Σw in (0, 1] (NaN when no candidate was finite)."""
        ess = torch.exp(2.0 * state.log_w_sum - state.log_w2_sum)
        return {"ess": ess, "max_weight": torch.exp(state.log_w_max - state.log_w_sum)}
