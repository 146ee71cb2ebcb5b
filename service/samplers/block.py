"""Blocks of steps: several steps of every chain per driver iteration or engine step.

MH-GAN, DRS and SIR propose from the prior, independently of the chain's state: the proposal of step ``t`` is
``G(z_t)`` with ``z_t`` keyed by (seed, chain, t) alone. So the proposals of steps ``t .. t + W − 1`` can be drawn and
scored by G and D in **one** batched call over ``B × W`` rows (the published MH-GAN code scores a chain's K
proposals in one batch for the same reason), after which only the accept decisions run, with no network in the
loop (:func:`mh_scan`; DRS and SIR in their own ``step_block``).

REP-GAN and DDLS (and MH-GAN with ``real`` init) need one network call per step; their blocks draw the random
numbers of the block's steps in one call and hand them to ``step`` as :class:`Prefetched`
(``SamplerBase.step_block``), at most ``STEP_BLOCK_STEPS`` steps at a time.

Either way the random numbers are the very ones the one-step path draws, keyed by the same (seed, chain, t, draw),
and running sums add in step order (:func:`sum_in_order`), so a block of W steps gives the same chain and statistics
as W calls of ``step``, bit for bit (up to the network's own batch-size rounding). This removes the per-step fixed
cost (random-number kernels, bookkeeping, the engine's host syncs) W times, and for the independence samplers fills
the device when few chains run (one chain: W proposals per call instead of one).

A sampler that supports blocks has ``supports_blocks() -> True`` and

    state, info = algo.step_block(state, streams, params, t, steps, width)

with ``steps`` (B,) int64 in [0, width]: how many steps each row may run in this block (its steps left, capped).
``info`` is a :class:`BlockInfo` of per-row sums; ``info.steps`` is how many steps each row actually ran (a DRS row
stops at its first acceptance), by which the caller advances ``t``. ``steps_left(state, params, t, n_steps)`` gives
each row's remaining steps under the sampler's ``done`` rule, and ``block_limit()`` the most steps per block.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from service.samplers.base import GanPair, rows_where
from service.samplers.energy import evaluate
from service.samplers.rng import Streams, normal, uniform

BLOCK_PROPOSALS = 4096
"""Default most proposal rows (chains × block width) one block evaluates: large enough that the per-step fixed cost
is amortised over thousands of rows, small enough that one block stays short (continuous batching admits new
chains between blocks)."""
BLOCK_BYTES = 2**20
"""Most bytes of generated samples (x) one block's network call produces. Larger samples come from larger networks,
whose per-row cost already dwarfs the per-step overhead a block saves, while a wider call costs them cache misses:
on the project's CPU, blocks of 4096 rows paid 1.7–3x on the 2-D MLP (8 B per sample) at 256–1024 chains but
lost 0.8x on the 16x16 digits DCGAN (1 KiB per sample) at 1024 chains (``benchmarks/speed_results_earlier.md``). With this
cap the digits model runs blocks of 4 steps at 256 chains and none at 1024; a 64x64 RGB model none from 86 chains."""
BLOCK_BYTES_ACCELERATOR = 64 * 2**20
"""The same cap on a GPU, where a wider call is what fills the device: only memory bounds it there (the device's
step budget, ``max_step_rows``, bounds the rows as well)."""


def block_bytes(device: torch.device | str) -> int:
    """The most bytes of samples one block's network call produces on ``device``."""
    return BLOCK_BYTES if torch.device(device).type == "cpu" else BLOCK_BYTES_ACCELERATOR


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


class Prefetched(NamedTuple):
    """The random numbers of one step, drawn ahead for a whole block (state-dependent samplers: rep, ddls, mh with
    ``real`` init). Passed to ``step`` in place of the Streams: ``prior_draw`` and ``accept_uniform`` then return
    these. proposal (B, *latent) is the ``DRAW_PROPOSAL`` normal, accept (B,) the ``DRAW_ACCEPT`` uniform."""

    proposal: Tensor
    accept: Tensor


def block_width(rows: int, sample_bytes: int, proposals: int = BLOCK_PROPOSALS, max_bytes: int = BLOCK_BYTES) -> int:
    """Steps per block for ``rows`` chains whose samples take ``sample_bytes`` each: at least 1."""
    budget = min(proposals, max_bytes // max(1, sample_bytes))
    return max(1, budget // max(1, rows))


STEP_BLOCK_STEPS = 16
"""Most steps a block runs for a sampler whose every step needs its own network call (rep, ddls, mh with ``real``
init): drawing 16 steps' random numbers at once already removes most of their per-call cost, and a longer block
would only hold up requests waiting to join the pool (each of its steps is a full G + D call)."""

EARLY_STOP_TRIES = 0.5
"""A sampler whose rows stop at their first acceptance (DRS) sizes a block to this many expected acceptances per
row: at acceptance probability p, ``EARLY_STOP_TRIES / p`` tries (so little of a block is scored after its row
has already accepted). Until a try has been made, blocks are ``EARLY_STOP_FIRST`` steps."""
EARLY_STOP_FIRST = 8


def sum_in_order(start: Tensor, values: Tensor) -> Tensor:
    """start (B,) + values[:, 0] + values[:, 1] + ..., added left to right in ``start``'s dtype: the very sum W
    single steps accumulate, whatever the block width. On a CPU numpy's ``add.accumulate`` does it in one call
    (sequential IEEE adds, as torch's); elsewhere one add per column."""
    values = values.to(start.dtype)
    if start.device.type == "cpu":
        table = np.concatenate([start.detach().numpy()[:, None], values.detach().numpy()], axis=1)
        return torch.from_numpy(np.add.accumulate(table, axis=1)[:, -1].copy())
    total = start
    for j in range(values.shape[1]):
        total = total + values[:, j]
    return total


def early_stop_width(width: int, acceptance_sum: Tensor, proposals: Tensor) -> int:
    """``width`` capped for rows that stop at their first acceptance, from the mean acceptance probability of the
    tries so far (acceptance_sum and proposals (B,), as in the driver's ChainStats)."""
    tries = float(proposals.sum())
    if tries <= 0:
        return min(width, EARLY_STOP_FIRST)
    p = float(acceptance_sum.sum()) / tries
    return max(1, min(width, math.ceil(EARLY_STOP_TRIES / max(p, 1e-9))))


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


SCAN_ELEMENTS = 2**24
"""On a GPU, most elements of the (B, chunk, chunk) next-accept table :func:`mh_scan` builds per chunk of steps:
the chunk is the largest power of two from ``SCAN_MAX_CHUNK`` down to ``SCAN_MIN_CHUNK`` that fits, else the step
loop runs. A kernel launch costs more there than a table of millions of elements, so the loop's W rounds of
launches are what to avoid."""
SCAN_MAX_CHUNK = 64
SCAN_MIN_CHUNK = 8
PYTHON_LOOP_ROWS = 4
"""On a CPU, blocks of up to this many chains decide their accepts in a plain Python loop over float32 scalars
(about 1 µs a step); more chains loop over the steps in numpy on (B,) arrays. Both beat the next-accept table on
the project's CPU box (``benchmarks/speed_findings.md``)."""


def scan_chunk(rows: int) -> int:
    """Steps per chunk of the next-accept table for ``rows`` chains on a GPU (0: use the step loop)."""
    chunk = SCAN_MAX_CHUNK
    while chunk >= SCAN_MIN_CHUNK and rows * chunk * chunk > SCAN_ELEMENTS:
        chunk //= 2
    return chunk if chunk >= SCAN_MIN_CHUNK else 0


def _log_alpha(l_k: Tensor, current: Tensor, current_ok: Tensor, proposal_ok: Tensor) -> Tensor:
    """The log acceptance ratio of :func:`service.samplers.kernel.accept_test`, elementwise and broadcasting:
    +inf from a non-finite current state, -inf for a non-finite proposal or a NaN."""
    inf = torch.tensor(float("inf"), dtype=l_k.dtype, device=l_k.device)
    la = torch.where(current_ok, l_k - current, inf)
    la = torch.where(torch.isnan(la), -inf, la)
    return torch.where(proposal_ok, la, -inf)


def mh_scan(logit: Tensor, ok: Tensor, log_u: Tensor, current: Tensor, current_ok: Tensor) -> tuple[Tensor, Tensor]:
    """The accept decisions of W independence-MH steps, decided after the block's one network call.

    logit (B, W) proposal logits; ok (B, W) proposal finite and the step runs; log_u (B, W) log accept uniforms;
    current (B,) logit of the state before the block; current_ok (B,) it is finite. Returns (accepted (B, W) bool,
    log_alpha (B, W)): the very decisions and log alphas of W sequential :func:`accept_test` calls, whichever way
    they are computed:

    - CPU: a loop over the steps in Python scalars (a few chains) or in numpy over (B,) arrays. float32
      subtraction and comparison give the same bits in numpy, and in float64 rounded back to float32.
    - GPU: :func:`_mh_table`, no loop over steps; a loop of (B,) kernels when even the smallest table is too big.
    """
    b = logit.shape[0]
    if logit.device.type == "cpu" and logit.dtype == current.dtype:
        if b <= PYTHON_LOOP_ROWS and logit.dtype == torch.float32:
            return _mh_loop_python(logit, ok, log_u, current, current_ok)
        return _mh_loop_numpy(logit, ok, log_u, current, current_ok)
    chunk = scan_chunk(b)
    if chunk == 0:
        return _mh_loop_torch(logit, ok, log_u, current, current_ok)
    return _mh_table(logit, ok, log_u, current, current_ok, chunk)


def _mh_table(
    logit: Tensor, ok: Tensor, log_u: Tensor, current: Tensor, current_ok: Tensor, chunk: int
) -> tuple[Tensor, Tensor]:
    """:func:`mh_scan` without a loop over steps, ``chunk`` steps at a time.

    After accepting proposal j the state's logit is exactly ``logit[j]``, so every decision depends only on which
    proposal was accepted last. ``nxt[j]`` = the first step k > j that accepts when the state is proposal j (one
    (chunk, chunk) comparison per row); the accepted steps are the path first → nxt[first] → ..., and whether step
    k lies on it is found by binary lifting over powers of ``nxt`` (O(log chunk) gathers).
    """
    acc_parts, la_parts = [], []
    cur, cur_ok = current, current_ok
    for start in range(0, logit.shape[1], chunk):
        lg, okc, lu = logit[:, start:start + chunk], ok[:, start:start + chunk], log_u[:, start:start + chunk]
        acc, la = _mh_chunk(lg, okc, lu, cur, cur_ok)
        acc_parts.append(acc)
        la_parts.append(la)
        last = last_true(acc)
        cur = pick(last, lg, cur)
        cur_ok = cur_ok | (last >= 0)
    return torch.cat(acc_parts, 1), torch.cat(la_parts, 1)


def _mh_loop_torch(
    logit: Tensor, ok: Tensor, log_u: Tensor, current: Tensor, current_ok: Tensor
) -> tuple[Tensor, Tensor]:
    accs, las = [], []
    for j in range(logit.shape[1]):
        la = _log_alpha(logit[:, j], current, current_ok, ok[:, j])
        acc = log_u[:, j] < la
        current = torch.where(acc, logit[:, j], current)
        current_ok = current_ok | acc
        accs.append(acc)
        las.append(la)
    return torch.stack(accs, 1), torch.stack(las, 1)


def _mh_loop_numpy(
    logit: Tensor, ok: Tensor, log_u: Tensor, current: Tensor, current_ok: Tensor
) -> tuple[Tensor, Tensor]:
    lg = logit.detach().numpy().T.copy()  # (W, B): each step's row contiguous
    okn, lun = ok.numpy().T.copy(), log_u.detach().to(logit.dtype).numpy().T.copy()
    cur, cur_ok = current.detach().numpy().copy(), current_ok.numpy().copy()
    acc = np.empty(lg.shape, dtype=bool)
    la = np.empty_like(lg)
    inf = lg.dtype.type(np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, handled below as in accept_test
        for j in range(lg.shape[0]):
            a = np.where(cur_ok, lg[j] - cur, inf)
            a[np.isnan(a)] = -inf
            a[~okn[j]] = -inf
            la[j] = a
            np.less(lun[j], a, out=acc[j])
            np.copyto(cur, lg[j], where=acc[j])
            cur_ok |= acc[j]
    return torch.from_numpy(acc.T.copy()), torch.from_numpy(la.T.copy())


def _mh_loop_python(
    logit: Tensor, ok: Tensor, log_u: Tensor, current: Tensor, current_ok: Tensor
) -> tuple[Tensor, Tensor]:
    """float32 only: a difference of two float32 values computed in float64 and rounded to float32 is the float32
    difference (float64 has more than 2 · 24 + 2 bits), and float32 values compare exactly as Python floats."""
    f32 = np.float32
    inf = math.inf
    acc_rows, la_rows = [], []
    for lg, okr, lu, cur, cur_ok in zip(
        logit.tolist(), ok.tolist(), log_u.to(logit.dtype).tolist(), current.tolist(), current_ok.tolist(), strict=True
    ):
        accs, las = [], []
        for lj, oj, uj in zip(lg, okr, lu, strict=True):
            if not oj:
                a = -inf
            elif not cur_ok:
                a = inf
            else:
                a = float(f32(lj - cur))
                if a != a:  # NaN
                    a = -inf
            take = uj < a
            if take:
                cur, cur_ok = lj, True
            accs.append(take)
            las.append(a)
        acc_rows.append(accs)
        la_rows.append(las)
    return torch.tensor(acc_rows, dtype=torch.bool), torch.tensor(la_rows, dtype=logit.dtype)


def last_true(mask: Tensor) -> Tensor:
    """(B,) index of the last True of each row of ``mask`` (B, W), -1 when none."""
    idx = torch.arange(mask.shape[1], device=mask.device)
    if not mask.shape[1]:
        return torch.full(mask.shape[:1], -1, dtype=torch.int64, device=mask.device)
    return torch.where(mask, idx, -1).max(1).values


def _first_true(mask: Tensor, none: int) -> Tensor:
    """Index of the first True along the last dim, ``none`` when there is none."""
    n = mask.shape[-1]
    idx = torch.arange(n, device=mask.device)
    return torch.where(mask, idx, n).min(-1).values.clamp(max=none)


def _mh_chunk(lg: Tensor, ok: Tensor, lu: Tensor, cur: Tensor, cur_ok: Tensor) -> tuple[Tensor, Tensor]:
    b, w = lg.shape
    dev = lg.device
    first = _first_true(lu < _log_alpha(lg, cur[:, None], cur_ok[:, None], ok), w)  # (B,), w: none
    k = torch.arange(w, device=dev)
    later = k[None, :] > k[:, None]  # [j, k]: k after j
    la_jk = _log_alpha(lg[:, None, :], lg[:, :, None], torch.ones_like(later), ok[:, None, :] & later[None])
    nxt = _first_true(lu[:, None, :] < la_jk, w)  # (B, W): next accepted step after accepting j
    table = torch.cat([nxt, torch.full((b, 1), w, dtype=nxt.dtype, device=dev)], 1)  # node w: none, absorbing
    jumps = [table]
    for _ in range(max(1, w.bit_length()) - 1):
        jumps.append(jumps[-1].gather(1, jumps[-1]))
    # for every step k, the furthest path node <= k: start at `first`, take each power of nxt that stays <= k
    pos = first[:, None].expand(b, w).contiguous()
    for jt in reversed(jumps):
        ahead = jt.gather(1, pos)
        pos = torch.where(ahead <= k[None, :], ahead, pos)
    acc = pos == k[None, :]
    # each step's log alpha from the state it saw (the last accepted proposal before it, or the block's start)
    prev = torch.where(acc, k[None, :], -1).cummax(1).values
    prev = torch.cat([torch.full((b, 1), -1, dtype=prev.dtype, device=dev), prev[:, :-1]], 1)
    seen = prev >= 0
    state_logit = torch.where(seen, lg.gather(1, prev.clamp(min=0)), cur[:, None])
    la = _log_alpha(lg, state_logit, seen | cur_ok[:, None], ok)
    return acc, la
