"""Proposal blocks: many steps of an independence sampler in one network call.

MH-GAN, DRS and SIR propose from the prior, independently of the chain's state: the proposal of step ``t`` is
``G(z_t)`` with ``z_t`` keyed by (seed, chain, t) alone. So the proposals of steps ``t .. t + W − 1`` can be drawn and
scored by G and D in **one** batched call over ``B × W`` rows (the published MH-GAN code scores a chain's K
proposals in one batch for the same reason), after which only the accept decisions run step by step, on (B,)
tensors, with no network in the loop. The random numbers are the very ones the one-step path draws, keyed by the
same (seed, chain, t, draw), so a block of W steps gives the same chain as W calls of ``step`` (bit for bit, up to
the network's own batch-size rounding).

This removes the per-step fixed cost (random-number kernels, bookkeeping, the engine's host syncs) W times, and
fills the device when few chains run (one chain: W proposals per call instead of one).

A sampler that supports blocks has ``supports_blocks() -> True`` and

    state, info = algo.step_block(state, streams, params, t, steps, width)

with ``steps`` (B,) int64 in [0, width]: how many steps each row may run in this block (its steps left, capped).
``info`` is a :class:`BlockInfo` of per-row sums; ``info.steps`` is how many steps each row actually ran (a DRS row
stops at its first acceptance), by which the caller advances ``t``. ``steps_left(state, params, t, n_steps)`` gives
each row's remaining steps under the sampler's ``done`` rule.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from service.samplers.base import GanPair, rows_where
from service.samplers.energy import evaluate
from service.samplers.rng import Streams, normal, uniform

BLOCK_PROPOSALS = 4096
"""Default most proposal rows (chains × block width) one block evaluates: large enough that the per-step fixed cost
is amortised over thousands of rows, small enough that one block stays short (continuous batching admits new
chains between blocks)."""
BLOCK_BYTES = 64 * 2**20
"""Default most bytes of generated samples (x) one block holds: bounds the block's memory on large images."""


class Candidates(NamedTuple):
    """W proposals per row, all scored: z (B, W, *latent), x (B, W, *output), logit (B, W), finite (B, W) bool,
    u (B, W) the accept-test uniforms of the same steps."""

    z: Tensor
    x: Tensor
    logit: Tensor
    finite: Tensor
    u: Tensor


class BlockInfo(NamedTuple):
    """Per-row sums over one block, all (B,) but ``rates`` (B, W).

    steps:     int64, steps run (proposals made) in this block.
    accepted:  int64, accepted proposals.
    nonfinite: int64, proposals rejected as non-finite.
    logit:     float, the chain's current calibrated logit after the block.
    rates:     float32 (B, W), each step's acceptance probability min(1, alpha); 0 where the row did not step.
               Kept per step (not summed) so that running sums add them in step order, as single steps do: a
               chain's statistics are then bit-identical whatever block widths it ran with.
    """

    steps: Tensor
    accepted: Tensor
    nonfinite: Tensor
    logit: Tensor
    rates: Tensor


def block_width(rows: int, sample_bytes: int, proposals: int = BLOCK_PROPOSALS, max_bytes: int = BLOCK_BYTES) -> int:
    """Steps per block for ``rows`` chains whose samples take ``sample_bytes`` each: at least 1."""
    budget = min(proposals, max_bytes // max(1, sample_bytes))
    return max(1, budget // max(1, rows))


def repeat_rows(streams: Streams, t: Tensor, width: int) -> tuple[Streams, Tensor]:
    """Streams and step indices of the B × W block rows: row b·W + j is chain b at step t_b + j."""
    s = Streams(
        streams.seed.repeat_interleave(width),
        streams.chain.repeat_interleave(width),
        None if streams.prefix is None else streams.prefix.repeat_interleave(width, dim=0),
    )
    j = torch.arange(width, dtype=torch.int64, device=t.device)
    return s, (t[:, None] + j[None, :]).reshape(-1)


def draw_candidates(
    pair: GanPair, latent_shape: tuple[int, ...], streams: Streams, t: Tensor, width: int, z_draw: int, u_draw: int
) -> Candidates:
    """The proposals and uniforms of steps t .. t + width − 1 of every row, G and D run once over B × W rows."""
    b = len(streams)
    s, tt = repeat_rows(streams, t, width)
    z = normal(s, tt, z_draw, latent_shape)
    ev = evaluate(pair, z, with_grad=False)
    u = uniform(s, tt, u_draw)
    return Candidates(
        z.reshape(b, width, *z.shape[1:]),
        ev.x.reshape(b, width, *ev.x.shape[1:]),
        ev.logit.reshape(b, width),
        ev.finite.reshape(b, width),
        u.reshape(b, width),
    )


def step_mask(steps: Tensor, width: int) -> Tensor:
    """(B, W) bool: step j of the block runs for row b (j < steps_b)."""
    return torch.arange(width, device=steps.device)[None, :] < steps[:, None]


def pick(sel: Tensor, block: Tensor, current: Tensor) -> Tensor:
    """Row b's ``block[b, sel_b]`` where ``sel_b >= 0``, else ``current[b]``. sel (B,) int64; block (B, W, ...)."""
    rows = torch.arange(sel.shape[0], device=sel.device)
    chosen = block[rows, sel.clamp(min=0)]
    return rows_where(sel >= 0, chosen, current)
