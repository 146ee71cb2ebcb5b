"""MH-GAN: independence Metropolis–Hastings in x-space (Turner et al., ICML 2019).

Proposal x' = G(z'), z' ~ p0, independent of the current state; p_g cancels and

    log alpha = d~(x') − d~(x_k),        accept iff log u < log alpha.

State: the current z, x and d~(x). K proposals per output; the output is the last state.

Initialisation (``MhOptions.init``):

- ``generator`` (default, exact): x_0 = G(z_0), z_0 ~ p0.
- ``real`` (the paper's): x_0 is a held-out real sample (``pair.real`` with its calibrated ``pair.real_logit``),
  picked by the chain's own stream, so there is no burn-in. A chain that has not accepted by its last step K is
  re-run from its first fake proposal (the one made at step 0) for K more steps with fresh proposals, so a real
  sample is never returned; such chains are flagged ``restarted``. The latent of a real state is all zeros.
  This mode needs each row's K: pass ``values["steps"]`` to :meth:`MhSampler.make_params`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import ChainOutput, GanPair, SamplerParamError, UnsupportedPairError, rows_where
from service.samplers.block import BlockInfo, last_true, mh_scan, pick, step_mask
from service.samplers.energy import evaluate
from service.samplers.kernel import DRAW_INIT_INDEX, DRAW_PROPOSAL, STEPS_KEY, SamplerBase, accept_test
from service.samplers.options import Choice, Options, option
from service.samplers.rng import Streams, integers

MH_DEFAULT_STEPS = 640
"""K of the paper."""
MH_DEFAULT_INIT = "generator"
MH_INITS = ("generator", "real")


@dataclass(frozen=True)
class MhOptions(Options):
    init: str = option(
        MH_DEFAULT_INIT, Choice(MH_INITS), "initial state: a fresh G sample (exact) or a held-out real sample"
    )


class MhParams(NamedTuple):
    """steps (B,) int64: each row's K (used by ``init="real"`` to restart at K)."""

    steps: Tensor


class MhState(NamedTuple):
    """Current chain state, all (B, ...).

    z, x, logit: current latent (zeros while real), sample and calibrated logit.
    finite:      (B,) bool, the current logit and sample are finite.
    is_real:     (B,) bool, the current state is still the initial real sample (never accepted).
    restarted:   (B,) bool, the chain was re-run from its first fake proposal.
    z_first, x_first, logit_first, finite_first: the proposal made at step 0 (``real`` init only, else None).
    """

    z: Tensor
    x: Tensor
    logit: Tensor
    finite: Tensor
    is_real: Tensor
    restarted: Tensor
    z_first: Tensor | None
    x_first: Tensor | None
    logit_first: Tensor | None
    finite_first: Tensor | None


class MhInfo(NamedTuple):
    """All (B,): acceptance_rate min(1, alpha); is_accepted; is_nonfinite (proposal rejected as non-finite);
    logit of the state after the step; log_alpha in [-inf, inf]; proposal_logit d~(x')."""

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_nonfinite: Tensor
    logit: Tensor
    log_alpha: Tensor
    proposal_logit: Tensor


class MhSampler(SamplerBase):
    name: ClassVar[str] = "mh"
    default_steps: ClassVar[int] = MH_DEFAULT_STEPS
    params_cls = MhParams
    options_cls = MhOptions
    options: MhOptions

    def __init__(self, pair: GanPair, options: MhOptions | None = None) -> None:
        super().__init__(pair, options)
        self.real_init = self.options.init == "real"
        if self.real_init and (pair.real is None or pair.real_logit is None or pair.real.shape[0] == 0):
            raise UnsupportedPairError(self.name, "init='real' needs held-out real samples, and this model has none")

    def make_params(self, values: Mapping[str, Tensor], batch: int, device: torch.device | str) -> MhParams:
        dev = torch.device(device)
        extra = sorted(set(values) - {STEPS_KEY})
        if extra:
            raise SamplerParamError(extra[0], values[extra[0]], "one of [] (mh has no numeric params)")
        steps = values.get(STEPS_KEY)
        if steps is None:
            if self.real_init:
                raise SamplerParamError(STEPS_KEY, None, "each row's chain length (mh init='real' restarts at it)")
            steps_t = torch.full((batch,), self.default_steps, dtype=torch.int64, device=dev)
        else:
            steps_t = steps.to(device=dev, dtype=torch.int64).expand(batch).clone()
            if self.real_init and bool((steps_t < 1).any()):
                raise SamplerParamError(STEPS_KEY, int(steps_t.min()), ">= 1 for mh init='real'")
        return MhParams(steps_t)

    def init(self, streams: Streams, params: MhParams) -> MhState:
        b = len(streams)
        if self.real_init:
            assert self.pair.real is not None and self.pair.real_logit is not None
            dev = streams.seed.device
            idx = integers(streams, 0, DRAW_INIT_INDEX, int(self.pair.real.shape[0])).to(self.pair.real.device)
            x = self.pair.real[idx].to(dev)
            logit = self.pair.real_logit[idx].to(dev).float().reshape(b)
            z = torch.zeros((b, *self.latent_shape), device=dev)
            t = torch.ones(b, dtype=torch.bool, device=dev)
            finite = torch.isfinite(logit)
            return MhState(z, x, logit, finite, t, ~t, z.clone(), x.clone(), logit.clone(), finite.clone())
        z = self.init_latent(streams)
        ev = evaluate(self.pair, z, with_grad=False)
        f = torch.zeros(b, dtype=torch.bool, device=z.device)
        return MhState(z, ev.x, ev.logit, ev.finite, f, f.clone(), None, None, None, None)

    def step(self, state: MhState, streams: Streams, params: MhParams, t: Tensor) -> tuple[MhState, MhInfo]:
        if self.real_init:
            state = self._restart(state, params, t)
        z_p = self.prior_draw(streams, t, DRAW_PROPOSAL)
        ev = evaluate(self.pair, z_p, with_grad=False)
        test = accept_test(ev.logit - state.logit, ev.finite, state.finite, self.accept_uniform(streams, t))
        acc = test.accept
        new = state._replace(
            z=rows_where(acc, z_p, state.z),
            x=rows_where(acc, ev.x, state.x),
            logit=torch.where(acc, ev.logit, state.logit),
            finite=torch.where(acc, ev.finite, state.finite),
            is_real=state.is_real & ~acc,
        )
        if self.real_init:
            assert state.z_first is not None and state.x_first is not None
            assert state.logit_first is not None and state.finite_first is not None
            first = t == 0
            new = new._replace(
                z_first=rows_where(first, z_p, state.z_first),
                x_first=rows_where(first, ev.x, state.x_first),
                logit_first=torch.where(first, ev.logit, state.logit_first),
                finite_first=torch.where(first, ev.finite, state.finite_first),
            )
        info = MhInfo(test.rate, acc, ~ev.finite, new.logit, test.log_alpha, ev.logit)
        return new, info

    def step_block(
        self, state: MhState, streams: Streams, params: MhParams, t: Tensor, steps: Tensor, width: int
    ) -> tuple[MhState, BlockInfo]:
        """``steps`` (B,) MH steps per row (at most ``width``) with one G + D call (:mod:`service.samplers.block`).

        The accept decisions are those of :func:`accept_test` step by step, found without a loop over steps
        (:func:`~service.samplers.block.mh_scan`); z and x of the last accepted proposal are gathered once.
        """
        if self.real_init:  # restarts from the step-0 proposal, which the scan does not track: step by step
            return super().step_block(state, streams, params, t, steps, width)
        cand = self.candidates(streams, t, width)
        on = step_mask(steps, width)
        ok = cand.finite & on  # a step the row does not run is a proposal that is never accepted
        accepted, log_alpha = mh_scan(cand.logit, ok, torch.log(cand.u), state.logit, state.finite)
        rates = torch.where(on, torch.exp(torch.clamp(log_alpha, max=0.0)), 0.0).float()
        sel = last_true(accepted)
        logit = pick(sel, cand.logit, state.logit)
        finite = state.finite | (sel >= 0)  # only a finite proposal is accepted
        new = state._replace(
            z=pick(sel, cand.z, state.z),
            x=pick(sel, cand.x, state.x),
            logit=logit,
            finite=finite,
            is_real=state.is_real & (sel < 0),
        )
        info = BlockInfo(
            steps=steps,
            accepted=accepted.sum(1),
            nonfinite=(on & ~cand.finite).sum(1),
            logit=logit,
            rates=rates,
        )
        return new, info

    def _restart(self, state: MhState, params: MhParams, t: Tensor) -> MhState:
        """Rows still at their real sample at step K continue from their first fake proposal."""
        assert state.z_first is not None and state.x_first is not None
        assert state.logit_first is not None and state.finite_first is not None
        r = state.is_real & (t >= params.steps)
        return state._replace(
            z=rows_where(r, state.z_first, state.z),
            x=rows_where(r, state.x_first, state.x),
            logit=torch.where(r, state.logit_first, state.logit),
            finite=torch.where(r, state.finite_first, state.finite),
            is_real=state.is_real & ~r,
            restarted=state.restarted | r,
        )

    def block_limit(self) -> int | None:
        """None with ``generator`` init (one network call per block); ``real`` init steps one call per step."""
        return super().block_limit() if self.real_init else None

    def steps_left(self, state: MhState, params: MhParams, t: Tensor, n_steps: Tensor) -> Tensor:
        """Under :meth:`done`: with ``real`` init a row still real at K runs up to 2K (a block stops at K first,
        where it is decided whether the row restarts)."""
        if not self.real_init:
            return super().steps_left(state, params, t, n_steps)
        long = state.restarted | (state.is_real & (t >= n_steps))
        return torch.where(long, 2 * n_steps - t, n_steps - t).clamp(min=0)

    def done(self, state: MhState, params: MhParams, t: Tensor, n_steps: Tensor) -> Tensor:
        if not self.real_init:
            return t >= n_steps
        # A row still real at K is not done: its next step restarts it, and it runs K more.
        k2 = 2 * n_steps
        return torch.where(state.restarted, t >= k2, (t >= n_steps) & ~state.is_real) | (t >= k2)

    def output(self, state: MhState) -> ChainOutput:
        return ChainOutput(state.z, state.x, state.logit)

    def chain_extras(self, state: MhState) -> dict[str, Tensor]:
        return {"restarted": state.restarted}
