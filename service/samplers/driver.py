"""The in-process chain driver: run every chain of a request as one batch (NumPyro's kernel/driver split).

The engine batches chains of many requests itself with ``init``/``step``/``done``/``output`` plus
:func:`init_stats` / :func:`update_stats`; :func:`run_chains` is the same loop for one batch of rows, used by tests,
benchmarks and library callers. No per-chain Python loop: a row past its length is frozen with
:func:`~service.samplers.base.tree_where`, and the loop stops once every row is done.

Every Info has ``acceptance_rate``, ``is_accepted``, ``is_nonfinite`` and ``logit`` (the chain's current calibrated
logit after the step), all (B,).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import tree_scatter, tree_select, tree_where
from service.samplers.block import (
    BLOCK_PROPOSALS,
    BlockInfo,
    block_bytes,
    block_width,
    early_stop_width,
    step_mask,
    sum_in_order,
)
from service.samplers.energy import energy, rows_finite
from service.samplers.kernel import STEPS_KEY
from service.samplers.rng import Streams

DONE_CHECK_EVERY = 8
"""Iterations between host syncs that test "every row done" before the longest row's length is reached (rows of
DRS finish early when they accept). From the last step of that length on, the test runs every iteration."""
COMPACT_BELOW = 0.5
"""At a done-check, when fewer than this fraction of the rows are still running (DRS rows finish at different
tries), the next ``DONE_CHECK_EVERY`` steps run only those rows instead of stepping finished rows masked."""
MAX_LENGTH_FACTOR = 2
"""No sampler runs a row past ``MAX_LENGTH_FACTOR * n_steps`` steps (MH-GAN's ``real`` restart runs K more)."""


class ChainStats(NamedTuple):
    """Per-chain running statistics, all (B,).

    accepted:       int64, accepted proposals.
    proposals:      int64, steps run (proposals made).
    acceptance_sum: float32, sum of the per-step min(1, alpha); divide by ``proposals`` for the acceptance rate.
    nonfinite:      int64, proposals rejected for a non-finite logit / gradient / output, plus 1 when the initial
                    state was non-finite (so a one-shot kernel's bad output is reported too).
    logit_initial:  float32, calibrated logit of the initial state.
    logit_final:    float32, calibrated logit of the current state (after the last step).
    """

    accepted: Tensor
    proposals: Tensor
    acceptance_sum: Tensor
    nonfinite: Tensor
    logit_initial: Tensor
    logit_final: Tensor


class Traces(NamedTuple):
    """Thinned scalar traces, every ``every`` steps including step 0 (the initial state).

    t:      (T,) int64 iteration index of each record.
    logit:  (T, B) calibrated logit d~(x_k).
    energy: (T, B) U(z_k) = ½‖z_k‖² − d~(G(z_k)).
    z_norm: (T, B) ‖z_k‖ (typical-set check: about √dz under the prior).
    """

    every: int
    t: Tensor
    logit: Tensor
    energy: Tensor
    z_norm: Tensor


class ChainRun(NamedTuple):
    """What :func:`run_chains` returns.

    output: ChainOutput(z, x, logit) of the final states, (B, ...).
    stats:  ChainStats, (B,) each.
    extras: ``algo.chain_extras(final_state)``, name -> (B,).
    traces: Traces when ``trace_every > 0``, else None.
    curve:  (n_iter,) per-step acceptance rate averaged over the rows active at that step.
    steps:  (B,) int64 steps each row ran.
    """

    output: Any
    stats: ChainStats
    extras: dict[str, Tensor]
    traces: Traces | None
    curve: Tensor
    steps: Tensor


def init_stats(algo: Any, state: Any) -> ChainStats:
    """Zeroed statistics for freshly initialised rows, with their initial logit."""
    out = algo.output(state)
    logit = out.logit.detach().float()
    zi = torch.zeros_like(logit, dtype=torch.int64)
    bad = (~rows_finite(logit, out.x)).to(torch.int64)
    return ChainStats(zi, zi.clone(), torch.zeros_like(logit), bad, logit, logit.clone())


def update_stats(stats: ChainStats, info: Any, active: Tensor) -> ChainStats:
    """Fold one step's Info into the statistics of the ``active`` (B,) bool rows; other rows are unchanged."""
    a = active.to(torch.int64)
    return ChainStats(
        accepted=stats.accepted + (info.is_accepted & active).to(torch.int64),
        proposals=stats.proposals + a,
        acceptance_sum=stats.acceptance_sum + torch.where(active, info.acceptance_rate.float(), 0.0),
        nonfinite=stats.nonfinite + (info.is_nonfinite & active).to(torch.int64),
        logit_initial=stats.logit_initial,
        logit_final=torch.where(active, info.logit.float(), stats.logit_final),
    )


def update_stats_block(stats: ChainStats, info: BlockInfo) -> ChainStats:
    """Fold one block's per-row sums into the statistics (rows that ran no step are unchanged)."""
    ran = info.steps > 0
    acceptance_sum = sum_in_order(stats.acceptance_sum, info.rates)  # as update_stats adds them (0: not run)
    return ChainStats(
        accepted=stats.accepted + info.accepted,
        proposals=stats.proposals + info.steps,
        acceptance_sum=acceptance_sum,
        nonfinite=stats.nonfinite + info.nonfinite,
        logit_initial=stats.logit_initial,
        logit_final=torch.where(ran, info.logit.float(), stats.logit_final),
    )


def sample_bytes(algo: Any, state: Any) -> int:
    """Bytes of one row's generated sample x (sizes proposal blocks)."""
    x = algo.output(state).x
    return int(x[:1].numel() * x.element_size())


def block_steps(
    algo: Any, rows: int, x_bytes: int, proposals: int, device: torch.device, left_max: int, stats: ChainStats
) -> int:
    """Steps the next block runs for ``rows`` chains: the chain-step budget ``proposals`` spread over the rows
    (and a call's bytes of samples on ``device``), no more than the longest row has left, the sampler's own
    ``block_limit()``, and for samplers whose rows stop at their first acceptance the acceptance rate so far."""
    width = min(block_width(rows, x_bytes, proposals, block_bytes(device)), left_max)
    limit = algo.block_limit()
    if limit is not None:
        width = min(width, limit)
    if algo.stops_early:
        width = early_stop_width(width, stats.acceptance_sum, stats.proposals)
    return max(1, width)


def block_curve(info: BlockInfo) -> Tensor:
    """(W,) mean acceptance probability of each step of a block over the rows that ran it."""
    on = step_mask(info.steps, int(info.rates.shape[1]))
    return info.rates.sum(0) / on.sum(0).clamp(min=1)


def _trace_row(algo: Any, state: Any) -> tuple[Tensor, Tensor, Tensor]:
    out = algo.output(state)
    z = out.z.detach().float()
    logit = out.logit.detach().float()
    return logit, energy(z, logit), z.flatten(1).norm(dim=1)


def run_chains(
    algo: Any,
    streams: Streams,
    params: Any,
    n_steps: int | Tensor,
    trace_every: int = 0,
    block_proposals: int = BLOCK_PROPOSALS,
) -> ChainRun:
    """Run ``len(streams)`` chains to their lengths, all rows as one batch.

    n_steps: int or (B,) int64, each row's length (chain length K, SIR candidates N, DRS max tries).
    params:  the algorithm's Params for these rows (``algo.make_params``).
    trace_every: record Traces every this many steps (0: no traces).
    block_proposals: samplers that support blocks (:mod:`service.samplers.block`: all but raw) run several
        steps per iteration, up to this many chain-steps (mh, drs and sir score them in one network call; rep and
        ddls draw their random numbers in one call); 1 runs one step at a time.
        Blocks are not used while recording traces.
    """
    if block_proposals > 1 and trace_every == 0 and algo.supports_blocks():
        return _run_blocks(algo, streams, params, n_steps, block_proposals)
    state, stats, t, n = _start(algo, streams, params, n_steps)
    device, b = t.device, len(streams)
    curve: list[Tensor] = []
    trace_rows: list[tuple[Tensor, Tensor, Tensor]] = []
    trace_t: list[int] = []
    if trace_every > 0:
        trace_rows.append(_trace_row(algo, state))
        trace_t.append(0)
    longest = int(n.max()) if b else 0
    cap = MAX_LENGTH_FACTOR * longest + 1
    it = 0
    rows: Tensor | None = None  # the running rows while compacted, else None (step every row)
    while it <= cap:
        done = algo.done(state, params, t, n)
        if it + 1 >= longest or it % DONE_CHECK_EVERY == 0:
            running = ~done
            n_running = int(running.sum())
            if n_running == 0:
                break
            rows = running.nonzero().squeeze(1) if n_running < COMPACT_BELOW * b else None
        if rows is None:
            active = ~done
            new_state, info = algo.step(state, streams, params, t)
            state = tree_where(active, new_state, state)
            stats = update_stats(stats, info, active)
            n_active = active.sum().clamp(min=1)
            curve.append(torch.where(active, info.acceptance_rate.float(), 0.0).sum() / n_active)
            t = t + active.to(torch.int64)
        else:
            sub = tree_select(state, rows)
            sub_t = t[rows]
            active = ~done[rows]
            new_sub, info = algo.step(sub, tree_select(streams, rows), tree_select(params, rows), sub_t)
            state = tree_scatter(state, rows, tree_where(active, new_sub, sub))
            stats = tree_scatter(stats, rows, update_stats(tree_select(stats, rows), info, active))
            n_active = active.sum().clamp(min=1)
            curve.append(torch.where(active, info.acceptance_rate.float(), 0.0).sum() / n_active)
            t = t.index_copy(0, rows, sub_t + active.to(torch.int64))
        it += 1
        if trace_every > 0 and it % trace_every == 0:
            trace_rows.append(_trace_row(algo, state))
            trace_t.append(it)
    traces = None
    if trace_every > 0:
        logit, en, zn = (torch.stack(c) for c in zip(*trace_rows, strict=True))
        traces = Traces(trace_every, torch.tensor(trace_t, dtype=torch.int64), logit, en, zn)
    curve_t = torch.stack(curve) if curve else torch.zeros(0, device=device)
    return ChainRun(algo.output(state), stats, algo.chain_extras(state), traces, curve_t, t)


def _start(algo: Any, streams: Streams, params: Any, n_steps: int | Tensor) -> tuple[Any, ChainStats, Tensor, Tensor]:
    """Initial states, their statistics, t = 0 and each row's length n (B,)."""
    b = len(streams)
    n = torch.as_tensor(n_steps, dtype=torch.int64, device=streams.seed.device).expand(b).clone()
    state = algo.init(streams, params)
    return state, init_stats(algo, state), torch.zeros(b, dtype=torch.int64, device=n.device), n


def _run_blocks(algo: Any, streams: Streams, params: Any, n_steps: int | Tensor, block_proposals: int) -> ChainRun:
    """:func:`run_chains` with proposal blocks: each iteration runs up to W steps of the rows that have steps left
    (only those rows once fewer than ``COMPACT_BELOW`` of them remain; for samplers whose rows stop at their first
    acceptance, as soon as one has stopped: a finished DRS row in the block would have W more proposals scored for
    nothing, 20 % of the network work on the digits DCGAN at 256 chains)."""
    state, stats, t, n = _start(algo, streams, params, n_steps)
    device, b = t.device, len(streams)
    x_bytes = sample_bytes(algo, state) if b else 1
    curve: list[Tensor] = []
    while True:
        left = algo.steps_left(state, params, t, n)
        running = left > 0
        n_running = int(running.sum())
        if n_running == 0:
            break
        width = block_steps(algo, n_running, x_bytes, block_proposals, device, int(left.max()), stats)
        if n_running < b and (algo.stops_early or n_running < COMPACT_BELOW * b):
            rows = running.nonzero().squeeze(1)
            sub, info = algo.step_block(
                tree_select(state, rows), tree_select(streams, rows), tree_select(params, rows), t[rows],
                left[rows].clamp(max=width), width,
            )
            state = tree_scatter(state, rows, sub)
            stats = tree_scatter(stats, rows, update_stats_block(tree_select(stats, rows), info))
            t = t.index_add(0, rows, info.steps)
        else:
            state, info = algo.step_block(state, streams, params, t, left.clamp(max=width), width)
            stats = update_stats_block(stats, info)
            t = t + info.steps
        curve.append(block_curve(info))
    curve_t = torch.cat(curve) if curve else torch.zeros(0, device=device)
    return ChainRun(algo.output(state), stats, algo.chain_extras(state), None, curve_t, t)


def steps_values(
    values: dict[str, Tensor], n_steps: int | Tensor, batch: int, device: torch.device | str
) -> dict[str, Tensor]:
    """``values`` plus ``"steps"`` (B,) int64 for ``algo.make_params`` (see :data:`~service.samplers.kernel.STEPS_KEY`)."""
    out = dict(values)
    out[STEPS_KEY] = torch.as_tensor(n_steps, dtype=torch.int64, device=device).expand(batch).clone()
    return out
