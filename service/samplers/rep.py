"""REP-GAN: MH with a reparameterized latent proposal (Wang et al., ECML-PKDD 2021).

Two coupled chains, z_k in latent space and x_k = G(z_k); proposal z' ~ q(·|z_k), x' = G(z'):

    log alpha = [d~(x') − d~(x_k)] + [log p0(z') − log p0(z_k)] + [log q(z_k|z') − log q(z'|z_k)],

i.e. MH on pi(z) ∝ p0(z) exp(d~(G(z))). Accept iff log u < log alpha.

Proposals (``RepOptions.proposal``):

- ``l2mc`` (default): latent Langevin, i.e. MALA on pi — mu(z) = z + (tau/2) ∇_z[d~(G(z)) − ½‖z‖²],
  z' = mu(z_k) + eta · eps (:mod:`service.samplers.langevin`). The gradient and mu at the current state are cached
  in the state, so a step costs one forward + one backward of D∘G.
- ``prior``: q = p0, independent of z_k; the prior and proposal terms cancel and the kernel is MH-GAN exactly
  (same draws, same decisions), with no gradient.

A non-finite proposal is never accepted. With ``l2mc``, from a non-finite current state (G or D failed at z_k) the
chain moves to its proposal whatever it is (not counted as an acceptance), so the local proposal cannot trap it.

Per-row params: ``step_size`` tau (default 0.01) and ``noise_scale`` eta. **eta defaults to √tau per row**: when
``noise_scale`` is not given to :meth:`RepSampler.make_params`, each row gets eta = √(its tau) (0.1 at the default
tau, the paper's setting); the spec's default 0.1 is that value at the default tau.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import ChainOutput, ParamSpec, fill_params, rows_where
from service.samplers.energy import evaluate
from service.samplers.kernel import DRAW_PROPOSAL, STEPS_KEY, SamplerBase, accept_test
from service.samplers.langevin import langevin_mean, langevin_move, mala_log_ratio
from service.samplers.options import Choice, Options, option
from service.samplers.rng import Streams

REP_DEFAULT_STEPS = 640
REP_DEFAULT_STEP_SIZE = 0.01
REP_DEFAULT_PROPOSAL = "l2mc"
REP_PROPOSALS = ("l2mc", "prior")
REP_STEP_SIZE_RANGE = (1e-6, 1.0)
REP_NOISE_SCALE_RANGE = (1e-4, 10.0)
NOISE_SCALE = "noise_scale"


@dataclass(frozen=True)
class RepOptions(Options):
    proposal: str = option(
        REP_DEFAULT_PROPOSAL, Choice(REP_PROPOSALS), "latent Langevin (MALA on pi) or the prior (== MH-GAN)"
    )


class RepParams(NamedTuple):
    """step_size tau (B,), noise_scale eta (B,)."""

    step_size: Tensor
    noise_scale: Tensor


class RepState(NamedTuple):
    """z (B, *latent_shape), x (B, *output_shape), logit (B,), finite (B,) bool;
    grad (B, *latent_shape) ∇_z d~(G(z)) and mu (B, *latent_shape) mu(z) — None for the prior proposal."""

    z: Tensor
    x: Tensor
    logit: Tensor
    finite: Tensor
    grad: Tensor | None
    mu: Tensor | None


class RepInfo(NamedTuple):
    """All (B,): acceptance_rate min(1, alpha), is_accepted, is_nonfinite, logit after the step, log_alpha."""

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_nonfinite: Tensor
    logit: Tensor
    log_alpha: Tensor


class RepSampler(SamplerBase):
    name: ClassVar[str] = "rep"
    needs_grad: ClassVar[bool] = True
    default_steps: ClassVar[int] = REP_DEFAULT_STEPS
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("step_size", REP_DEFAULT_STEP_SIZE, *REP_STEP_SIZE_RANGE, "Langevin step size tau"),
        ParamSpec(
            NOISE_SCALE, REP_DEFAULT_STEP_SIZE**0.5, *REP_NOISE_SCALE_RANGE, "proposal noise eta; default √step_size"
        ),
    )
    params_cls = RepParams
    options_cls = RepOptions
    options: RepOptions

    @property
    def langevin(self) -> bool:
        return self.options.proposal == "l2mc"

    def make_params(self, values: Mapping[str, Tensor], batch: int, device: torch.device | str) -> RepParams:
        values = {k: v for k, v in values.items() if k != STEPS_KEY}
        p = fill_params(RepParams, self.param_specs, values, batch, torch.device(device))
        if NOISE_SCALE not in values:
            p = p._replace(noise_scale=torch.sqrt(p.step_size))
        return p

    def _state(self, z: Tensor, params: RepParams) -> RepState:
        if not self.langevin:
            ev = evaluate(self.pair, z, with_grad=False)
            return RepState(z, ev.x, ev.logit, ev.finite, None, None)
        ev = evaluate(self.pair, z, with_grad=True)
        assert ev.grad is not None
        return RepState(z, ev.x, ev.logit, ev.finite, ev.grad, langevin_mean(z, ev.grad, params.step_size))

    def init(self, streams: Streams, params: RepParams) -> RepState:
        return self._state(self.init_latent(streams), params)

    def step(self, state: RepState, streams: Streams, params: RepParams, t: Tensor) -> tuple[RepState, RepInfo]:
        eps = self.prior_draw(streams, t, DRAW_PROPOSAL)
        if self.langevin:
            assert state.mu is not None
            prop = self._state(langevin_move(state.mu, params.noise_scale, eps), params)
            assert prop.mu is not None
            log_alpha = mala_log_ratio(state.z, state.logit, state.mu, prop.z, prop.logit, prop.mu, params.noise_scale)
        else:
            prop = self._state(eps, params)
            log_alpha = prop.logit - state.logit  # p0 terms cancel exactly: MH-GAN's ratio
        test = accept_test(log_alpha, prop.finite, state.finite, self.accept_uniform(streams, t))
        acc = test.accept
        # From a non-finite state the chain moves even to a non-finite proposal (not an acceptance): a local
        # proposal could otherwise never leave a region where G or D fails.
        mv = acc | ~state.finite if self.langevin else acc
        new = RepState(
            z=rows_where(mv, prop.z, state.z),
            x=rows_where(mv, prop.x, state.x),
            logit=torch.where(mv, prop.logit, state.logit),
            finite=torch.where(mv, prop.finite, state.finite),
            grad=None if prop.grad is None or state.grad is None else rows_where(mv, prop.grad, state.grad),
            mu=None if prop.mu is None or state.mu is None else rows_where(mv, prop.mu, state.mu),
        )
        return new, RepInfo(test.rate, acc, ~prop.finite, new.logit, test.log_alpha)

    def output(self, state: RepState) -> ChainOutput:
        return ChainOutput(state.z, state.x, state.logit)
