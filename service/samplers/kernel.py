"""Pieces shared by the sampler classes: a base class, the log-space accept test and the draw ids.

Draw ids (see :mod:`service.samplers.rng`): every sampler keys its step-``t`` proposal noise with
``DRAW_PROPOSAL`` and its accept-test uniform with ``DRAW_ACCEPT``, so kernels that must coincide (REP-GAN with a
prior proposal and MH-GAN; DDLS and REP-GAN's L2MC proposal) see the very same random numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import ChainOutput, GanPair, ParamSpec, UnsupportedPairError, fill_params, tree_where
from service.samplers.block import (
    STEP_BLOCK_STEPS,
    BlockInfo,
    Candidates,
    Prefetched,
    draw_candidates,
    repeat_rows,
    step_mask,
)
from service.samplers.options import Options
from service.samplers.rng import DRAW_INIT, Streams, normal, uniform

DRAW_PROPOSAL = 1
"""Proposal noise at step t (latent normals)."""
DRAW_ACCEPT = 2
"""Uniform of the accept test at step t."""
DRAW_INIT_ACCEPT = 3
"""Uniform of an accept test made by ``init`` (DRS's first try)."""
DRAW_INIT_INDEX = 4
"""Index of the held-out real sample chosen by MH-GAN's ``real`` init."""

STEPS_KEY = "steps"
"""``make_params`` accepts ``values["steps"]`` (B,): each row's chain length. Samplers that need it (MH-GAN's
``real`` init, which restarts a chain that never accepted) read it; the others ignore it, so callers may always
pass it."""


class NoParams(NamedTuple):
    """Params of a sampler without per-row numeric parameters."""


class AcceptTest(NamedTuple):
    """Result of a log-space Metropolis test, all (B,)."""

    log_alpha: Tensor  # float, in [-inf, +inf], never NaN
    accept: Tensor  # bool
    rate: Tensor  # float, min(1, alpha) in [0, 1]


def accept_test(log_alpha: Tensor, proposal_ok: Tensor, current_ok: Tensor, u: Tensor) -> AcceptTest:
    """Accept iff log u < log alpha, in log space (docs/algorithms.md §0).

    log_alpha (B,) is the raw log acceptance ratio; proposal_ok / current_ok (B,) bool say whether the proposal /
    current state are finite. A non-finite proposal is never accepted (log alpha = -inf); from a non-finite
    current state any finite proposal is accepted (log alpha = +inf), so no chain stays stuck on a NaN. ``u`` (B,)
    is in (0, 1) strictly (:func:`service.samplers.rng.uniform`), so log alpha >= 0 always accepts.
    """
    la = torch.where(current_ok, log_alpha, math.inf)
    la = torch.where(torch.isnan(la), -math.inf, la)
    la = torch.where(proposal_ok, la, -math.inf)
    accept = torch.log(u) < la
    rate = torch.exp(torch.clamp(la, max=0.0))
    return AcceptTest(la, accept, rate)


def view_rows(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) per-row value to broadcast against ``like`` (B, ...)."""
    return v.reshape(v.shape + (1,) * (like.dim() - 1))


def row_sq_norm(v: Tensor) -> Tensor:
    """‖v_b‖² per row, (B,)."""
    return v.flatten(1).pow(2).sum(1)


class SamplerBase:
    """Defaults shared by the sampler classes (see :class:`service.samplers.base.SamplingAlgorithm`)."""

    name: ClassVar[str]
    needs_grad: ClassVar[bool] = False
    stops_early: ClassVar[bool] = False
    """Rows finish at their first acceptance (DRS): blocks are sized by the acceptance rate
    (:func:`~service.samplers.block.early_stop_width`)."""
    param_specs: ClassVar[tuple[ParamSpec, ...]] = ()
    params_cls: ClassVar[type] = NoParams
    default_steps: ClassVar[int]
    options_cls: ClassVar[type[Options]]

    def __init__(self, pair: GanPair, options: Options | None = None) -> None:
        options = self.options_cls() if options is None else options
        if not isinstance(options, self.options_cls):
            raise TypeError(f"{self.name} takes {self.options_cls.__name__}, got {type(options).__name__}")
        if self.needs_grad and not pair.differentiable:
            raise UnsupportedPairError(self.name, "it needs gradients through G and D, and this model is forward-only")
        self.pair = pair
        self.options = options
        self.latent_shape = tuple(int(s) for s in pair.latent_shape)

    def make_params(self, values: Mapping[str, Tensor], batch: int, device: torch.device | str) -> Any:
        """Per-row Params NamedTuple of (B,) tensors; missing names take their spec default."""
        values = {k: v for k, v in values.items() if k != STEPS_KEY}
        return fill_params(self.params_cls, self.param_specs, values, batch, torch.device(device))

    def step(self, state: Any, streams: Any, params: Any, t: Tensor) -> tuple[Any, Any]:
        """One step of every row (each sampler defines it); ``streams`` may be a block's :class:`Prefetched`."""
        raise NotImplementedError

    def output(self, state: Any) -> ChainOutput:
        raise NotImplementedError

    def done(self, state: Any, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        """(B,) bool: the row has run its ``n_steps``."""
        return t >= n_steps

    def chain_extras(self, state: Any) -> dict[str, Tensor]:
        """Sampler-specific per-chain results, each (B,)."""
        return {}

    def exact(self) -> bool:
        return True

    def supports_blocks(self) -> bool:
        """True when :meth:`step_block` runs several steps per call (:mod:`service.samplers.block`)."""
        return True

    def block_limit(self) -> int | None:
        """Most steps per block (None: only the block budget bounds it). Samplers that override
        :meth:`step_block` with one network call per block return None."""
        return STEP_BLOCK_STEPS

    def step_block(
        self, state: Any, streams: Streams, params: Any, t: Tensor, steps: Tensor, width: int
    ) -> tuple[Any, BlockInfo]:
        """Up to ``width`` steps per row (``steps`` (B,)), for samplers whose proposal depends on the state: the
        random numbers of all ``width`` steps are drawn in one call (the same numbers ``step`` would draw, keyed
        by (seed, chain, t)), then ``step`` runs ``width`` times on them, one network call per step. The
        independence samplers (mh, drs, sir) override this with one network call per block.
        """
        b = len(streams)
        s, tt = repeat_rows(streams, t, width)
        eps = normal(s, tt, DRAW_PROPOSAL, self.latent_shape).reshape(b, width, *self.latent_shape)
        u = uniform(s, tt, DRAW_ACCEPT).reshape(b, width)
        on = step_mask(steps, width)
        everyone = int(steps.min()) if b else 0  # steps every row runs: no masking needed before this
        start_logit = self.output(state).logit
        infos = []
        for j in range(width):
            new, info = self.step(state, Prefetched(eps[:, j], u[:, j]), params, t + j)
            state = new if j < everyone else tree_where(on[:, j], new, state)
            infos.append(info)
        # per-row sums over the steps each row ran, once per block (integers and selections: the values W single
        # steps accumulate)
        accepted = (torch.stack([i.is_accepted for i in infos], 1) & on).sum(1)
        nonfinite = (torch.stack([i.is_nonfinite for i in infos], 1) & on).sum(1)
        rates = torch.where(on, torch.stack([i.acceptance_rate.float() for i in infos], 1), 0.0)
        logits = torch.stack([i.logit for i in infos], 1)
        last = logits.gather(1, (steps - 1).clamp(min=0)[:, None]).squeeze(1)
        logit = torch.where(steps > 0, last, start_logit)
        return state, BlockInfo(steps, accepted, nonfinite, logit, rates)

    def steps_left(self, state: Any, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        """(B,) int64 steps each row still runs under the default ``done`` rule ``t >= n_steps``."""
        return (n_steps - t).clamp(min=0)

    # -- helpers --------------------------------------------------------------------------------------------

    def prior_draw(self, streams: Streams | Prefetched, t: Tensor | int, draw: int) -> Tensor:
        """z ~ N(0, I), (B, *latent_shape), on the streams' device (or the block's prefetched proposal noise)."""
        if isinstance(streams, Prefetched):
            assert draw == DRAW_PROPOSAL, "a block prefetches only the proposal noise and the accept uniform"
            return streams.proposal
        return normal(streams, t, draw, self.latent_shape)

    def init_latent(self, streams: Streams) -> Tensor:
        return self.prior_draw(streams, 0, DRAW_INIT)

    def candidates(self, streams: Streams, t: Tensor, width: int) -> Candidates:
        """Proposals (``DRAW_PROPOSAL``) and accept uniforms (``DRAW_ACCEPT``) of steps t .. t + width − 1."""
        return draw_candidates(self.pair, self.latent_shape, streams, t, width, DRAW_PROPOSAL, DRAW_ACCEPT)

    @staticmethod
    def accept_uniform(streams: Streams | Prefetched, t: Tensor | int, draw: int = DRAW_ACCEPT) -> Tensor:
        if isinstance(streams, Prefetched):
            assert draw == DRAW_ACCEPT, "a block prefetches only the proposal noise and the accept uniform"
            return streams.accept
        return uniform(streams, t, draw)
