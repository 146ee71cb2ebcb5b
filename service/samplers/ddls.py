"""DDLS: discriminator-driven latent sampling (Che et al., NeurIPS 2020). Unadjusted Langevin on U:

    z ← z − (eps/2) ∇U(z) + √eps · n,   n ~ N(0, I),   U(z) = ½‖z‖² − d~(G(z)).

No MH test, so the target pi(z) ∝ p0 exp(d~) is only reached up to an O(eps) bias: ``exact()`` is False and
every result says so. The move is :mod:`service.samplers.langevin`'s with eta = √eps, drawn with the same noise as
REP-GAN's L2MC proposal (adding MALA's test to DDLS gives REP-GAN's path).

A step whose new logit, output or gradient is non-finite is rejected (the chain stays) and flagged; a chain whose
current state is itself non-finite moves anyway (not counted as accepted), so it can diffuse out of a region where G
or D fails.

``DdlsOptions.decay`` (off by default; annealing, not sampling) uses
eps_t = eps · (1 + t / DDLS_DECAY_T0) ** (−DDLS_DECAY_POWER); the last step size is reported per chain
(``step_size_final``).

``DDLS_DEFAULT_STEP_SIZE`` = 1e-4 was chosen by measurement (``benchmarks/quality.py``, step-size sweep in
``benchmarks/quality_results.md``): the step size must scale with the latent gradient of d~, and at the paper's
eps = 0.01 a sharp D makes DDLS drift to the modes D scores highest, ending worse than raw G on mode balance (grid of
25 Gaussians: mode KL 1.16 vs raw 0.69). Every eps <= 3e-4 improved both HQ fraction and mode KL there; 1e-4 is a
safe global default, and models override it in their manifest (``[samplers.ddls] step_size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import ChainOutput, ParamSpec, rows_where
from service.samplers.energy import evaluate
from service.samplers.kernel import DRAW_PROPOSAL, SamplerBase
from service.samplers.langevin import langevin_mean, langevin_move
from service.samplers.options import Flag, Options, option
from service.samplers.rng import Streams

DDLS_DEFAULT_STEPS = 1000
DDLS_DEFAULT_STEP_SIZE = 1e-4
"""Measured on the demo models (see the module docstring); the paper's 0.01 is worse than raw G on a sharp D."""
DDLS_STEP_SIZE_RANGE = (1e-8, 1.0)
DDLS_DECAY_T0 = 100.0
DDLS_DECAY_POWER = 0.55


@dataclass(frozen=True)
class DdlsOptions(Options):
    decay: bool = option(False, Flag(), "polynomial step-size decay (annealing: biased further; reported)")


class DdlsParams(NamedTuple):
    """step_size eps (B,)."""

    step_size: Tensor


class DdlsState(NamedTuple):
    """z (B, *latent_shape), x (B, *output_shape), logit (B,), grad (B, *latent_shape) ∇_z d~(G(z)),
    finite (B,) bool, step_size_last (B,) the eps of the last step (the initial eps before any)."""

    z: Tensor
    x: Tensor
    logit: Tensor
    grad: Tensor
    finite: Tensor
    step_size_last: Tensor


class DdlsInfo(NamedTuple):
    """All (B,): acceptance_rate 1.0 (0.0 for a rejected non-finite move), is_accepted, is_nonfinite, logit,
    step_size eps_t used."""

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_nonfinite: Tensor
    logit: Tensor
    step_size: Tensor


class DdlsSampler(SamplerBase):
    name: ClassVar[str] = "ddls"
    needs_grad: ClassVar[bool] = True
    default_steps: ClassVar[int] = DDLS_DEFAULT_STEPS
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("step_size", DDLS_DEFAULT_STEP_SIZE, *DDLS_STEP_SIZE_RANGE, "Langevin step size eps"),
    )
    params_cls = DdlsParams
    options_cls = DdlsOptions
    options: DdlsOptions

    def _eval(self, z: Tensor, eps: Tensor) -> DdlsState:
        ev = evaluate(self.pair, z, with_grad=True)
        assert ev.grad is not None
        return DdlsState(z, ev.x, ev.logit, ev.grad, ev.finite, eps)

    def init(self, streams: Streams, params: DdlsParams) -> DdlsState:
        return self._eval(self.init_latent(streams), params.step_size)

    def step_size_at(self, params: DdlsParams, t: Tensor) -> Tensor:
        """eps_t (B,): the row's eps, decayed when the option is on."""
        if not self.options.decay:
            return params.step_size
        return params.step_size * (1.0 + t.to(params.step_size.dtype) / DDLS_DECAY_T0) ** (-DDLS_DECAY_POWER)

    def step(self, state: DdlsState, streams: Streams, params: DdlsParams, t: Tensor) -> tuple[DdlsState, DdlsInfo]:
        eps_t = self.step_size_at(params, t)
        noise = self.prior_draw(streams, t, DRAW_PROPOSAL)
        z_p = langevin_move(langevin_mean(state.z, state.grad, eps_t), torch.sqrt(eps_t), noise)
        prop = self._eval(z_p, eps_t)
        ok = prop.finite
        mv = ok | ~state.finite  # from a non-finite state, move anyway (see the module docstring)
        new = DdlsState(
            z=rows_where(mv, prop.z, state.z),
            x=rows_where(mv, prop.x, state.x),
            logit=torch.where(mv, prop.logit, state.logit),
            grad=rows_where(mv, prop.grad, state.grad),
            finite=torch.where(mv, ok, state.finite),
            step_size_last=eps_t,
        )
        return new, DdlsInfo(ok.to(eps_t.dtype), ok, ~ok, new.logit, eps_t)

    def output(self, state: DdlsState) -> ChainOutput:
        return ChainOutput(state.z, state.x, state.logit)

    def chain_extras(self, state: DdlsState) -> dict[str, Tensor]:
        return {"step_size_final": state.step_size_last}

    def exact(self) -> bool:
        """False: unadjusted Langevin has an O(eps) bias (more with decay)."""
        return False
