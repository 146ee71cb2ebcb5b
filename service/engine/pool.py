"""A chain pool: the active chains of every request that shares (model, sampler, options, device), as one batch.

Rows are chains. All per-row data live in batched tensors (State, Params, Streams, t, n_steps, ChainStats and the
owning ticket id), concatenated with :func:`tree_cat` on admission and filtered with :func:`tree_select` on
retirement, so one ``algo.step`` advances every request's chains together, each with its own params and length.
A chain's randomness depends only on (seed, chain index, t) (``service.samplers.rng``), so its result does not
depend on which rows it shared a batch with.

Only the device worker thread touches a pool. Nothing here blocks or waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from service.engine.stats import ChainsFinished
from service.engine.ticket import PoolKey, Priority, Ticket
from service.samplers.base import SamplingAlgorithm, tree_cat, tree_select
from service.samplers.block import BLOCK_PROPOSALS
from service.samplers.driver import block_steps, init_stats, sample_bytes, update_stats, update_stats_block
from service.samplers.kernel import STEPS_KEY
from service.samplers.rng import Streams


class Batch(NamedTuple):
    """The pool's rows. Every leaf has leading dimension B (rows)."""

    state: Any  # the sampler's State NamedTuple
    params: Any  # the sampler's Params NamedTuple
    streams: Streams  # seed (B,), chain (B,)
    t: Tensor  # (B,) int64 steps done
    n_steps: Tensor  # (B,) int64 chain length
    stats: Any  # driver ChainStats
    owner: Tensor  # (B,) int64 ticket id


def _cat(batches: Sequence[Batch]) -> Batch:
    """Rows of several batches, in order."""
    return Batch(
        state=tree_cat([b.state for b in batches]),
        params=tree_cat([b.params for b in batches]),
        streams=tree_cat([b.streams for b in batches]),
        t=torch.cat([b.t for b in batches]),
        n_steps=torch.cat([b.n_steps for b in batches]),
        stats=tree_cat([b.stats for b in batches]),
        owner=torch.cat([b.owner for b in batches]),
    )


def _select(b: Batch, rows: Tensor) -> Batch:
    """The rows of ``b`` selected by a (B,) bool mask or index tensor."""
    return Batch(
        tree_select(b.state, rows), tree_select(b.params, rows), tree_select(b.streams, rows), b.t[rows],
        b.n_steps[rows], tree_select(b.stats, rows), b.owner[rows],
    )


def _rows(parts: Sequence[Any]) -> Any:
    """The rows of several admissions' tensors (or NamedTuples of tensors), in order; one part as it is (a
    one-request admission, the common case, copies nothing)."""
    if len(parts) == 1:
        return parts[0]
    return torch.cat(list(parts)) if isinstance(parts[0], Tensor) else tree_cat(parts)


def _values(ticket: Ticket) -> dict[str, Tensor]:
    """A ticket's numeric params as make_params values, plus its chain length under ``STEPS_KEY``."""
    values = {k: torch.tensor(float(v)) for k, v in ticket.work.params.items()}
    values[STEPS_KEY] = torch.tensor(ticket.work.steps, dtype=torch.int64)
    return values


class Admission(NamedTuple):
    """Chains ``start .. start + rows - 1`` of ``ticket`` to add to the pool."""

    ticket: Ticket
    start: int
    rows: int


class StepCounts(NamedTuple):
    """What one pool step ran: ``rows`` chains, ``chain_steps`` steps in all (rows × steps per row; a proposal
    block runs several steps per row), and the proposals, acceptances and non-finite proposals among them."""

    rows: int
    proposals: int
    accepted: int
    nonfinite: int
    chain_steps: int


UNBOUNDED_ROWS = 2**62
"""``max_step_rows`` when the device sets no limit."""


class ChainPool:
    """The rows of one pool key. Samplers with blocks (all but raw: ``algo.supports_blocks()``) advance each row up
    to W steps per :meth:`step`, with W chosen so that rows × W stays within ``block_proposals``, ``max_step_rows``
    (the device's memory budget for one network call: mh, drs and sir score the whole block's proposals in one
    call) and :func:`~service.samplers.block.block_bytes` of samples (:func:`~service.samplers.driver.block_steps`). Pools with a ticket that records traces step one at a time (traces are
    per step)."""

    def __init__(self, key: PoolKey, algo: SamplingAlgorithm, block_proposals: int = BLOCK_PROPOSALS) -> None:
        self.key = key
        self.algo = algo
        self.block_proposals = block_proposals
        self.max_step_rows = UNBOUNDED_ROWS
        self.threads: int | None = None  # torch's CPU threads while stepping (the model's [runtime] threads)
        self._sample_bytes = 0  # bytes of one row's x, known after the first admission
        self.device = torch.device(key.device)
        self.batch: Batch | None = None
        self.tickets: dict[int, Ticket] = {}
        self.rows_of_ticket: dict[int, int] = {}  # ticket id -> its rows in the pool
        self._rows_by_priority = {p: 0 for p in Priority}

    @property
    def rows(self) -> int:
        return 0 if self.batch is None else int(self.batch.t.shape[0])

    def rows_of(self, priority: Priority) -> int:
        return self._rows_by_priority[priority]

    def admit(self, items: Sequence[Admission]) -> None:
        """Initialise the new chains in one batched ``init`` and append them to the pool."""
        if not items:
            return
        dev = self.device
        streams = _rows([Streams.for_request(a.ticket.work.seed, a.rows, dev, first_chain=a.start) for a in items])
        params = _rows([self.algo.make_params(_values(a.ticket), a.rows, dev) for a in items])
        state = self.algo.init(streams, params)
        count = sum(a.rows for a in items)
        t = torch.zeros(count, dtype=torch.int64, device=dev)
        n_steps = _rows([torch.full((a.rows,), a.ticket.work.steps, dtype=torch.int64, device=dev) for a in items])
        owner = _rows([torch.full((a.rows,), a.ticket.id, dtype=torch.int64, device=dev) for a in items])
        new = Batch(state, params, streams, t, n_steps, init_stats(self.algo, state), owner)
        if not self._sample_bytes:
            self._sample_bytes = sample_bytes(self.algo, state)
        for a in items:
            self.tickets[a.ticket.id] = a.ticket
            self.rows_of_ticket[a.ticket.id] = self.rows_of_ticket.get(a.ticket.id, 0) + a.rows
            self._rows_by_priority[a.ticket.work.priority] += a.rows
        self.batch = new if self.batch is None else _cat([self.batch, new])
        self._trace(new, None, None)

    def width(self) -> int:
        """Steps per row the next :meth:`step` may run (1 when the sampler or a tracing ticket needs single steps)."""
        return self._plan()[0]

    def _plan(self) -> tuple[int, Tensor | None]:
        """(steps per row of the next step, each row's steps left when that is a block, else None)."""
        b = self.batch
        if self.block_proposals <= 1 or b is None or not self.algo.supports_blocks():
            return 1, None
        if any(tk.tracing for tk in self.tickets.values()):
            return 1, None
        left = self.algo.steps_left(b.state, b.params, b.t, b.n_steps)
        budget = min(self.block_proposals, self.max_step_rows)
        width = block_steps(self.algo, self.rows, self._sample_bytes, budget, self.device, int(left.max()), b.stats)
        return width, left

    def step(self) -> StepCounts:
        """One ``algo.step`` (or one proposal block) over every row; updates stats, t, per-ticket progress and
        traces."""
        b = self.batch
        assert b is not None
        width, left = self._plan()
        if left is not None and width > 1:
            return self._step_block(b, width, left)
        state, info = self.algo.step(b.state, b.streams, b.params, b.t)
        active = torch.ones_like(b.t, dtype=torch.bool)
        stats = update_stats(b.stats, info, active)
        new = b._replace(state=state, t=b.t + 1, stats=stats)
        self.batch = new
        for tid, rows in self.rows_of_ticket.items():
            self.tickets[tid].steps_done += rows
        self._trace(new, b.t, info.acceptance_rate)
        return StepCounts(
            rows=int(b.t.shape[0]),
            proposals=int((stats.proposals - b.stats.proposals).sum()),
            accepted=int((stats.accepted - b.stats.accepted).sum()),
            nonfinite=int((stats.nonfinite - b.stats.nonfinite).sum()),
            chain_steps=int(b.t.shape[0]),
        )

    def _step_block(self, b: Batch, width: int, left: Tensor) -> StepCounts:
        """Up to ``width`` steps per row in one ``algo.step_block`` (rows with fewer ``left`` run only theirs)."""
        state, info = self.algo.step_block(b.state, b.streams, b.params, b.t, left.clamp(max=width), width)
        self.batch = b._replace(state=state, t=b.t + info.steps, stats=update_stats_block(b.stats, info))
        owners, inverse = torch.unique(b.owner, return_inverse=True)
        per_ticket = torch.zeros(len(owners), dtype=torch.int64, device=b.owner.device).index_add_(0, inverse, info.steps)
        totals = torch.stack([info.steps.sum(), info.accepted.sum(), info.nonfinite.sum()]).tolist()
        for tid, steps in zip(owners.tolist(), per_ticket.tolist(), strict=True):
            self.tickets[tid].steps_done += steps
        return StepCounts(
            rows=int(b.t.shape[0]), proposals=totals[0], accepted=totals[1], nonfinite=totals[2], chain_steps=totals[0]
        )

    def retire(self) -> tuple[list[Ticket], ChainsFinished | None]:
        """Move finished rows to their tickets; return the tickets whose last chain retired."""
        b = self.batch
        if b is None:
            return [], None
        done = self.algo.done(b.state, b.params, b.t, b.n_steps)
        if not bool(done.any()):
            return [], None
        every = bool(done.all())  # one-shot requests (raw) and a pool's last rows: no copies of the batch
        fin = b if every else _select(b, done)
        out = self.algo.output(fin.state)
        extras_fn = getattr(self.algo, "chain_extras", None)
        extras: dict[str, Tensor] = extras_fn(fin.state) if extras_fn is not None else {}
        completed = []
        # one ticket in the pool (a lone request): its id, without a unique over the rows
        owners = list(self.tickets) if len(self.tickets) == 1 else torch.unique(fin.owner).tolist()
        for tid in owners:
            ticket = self.tickets[tid]
            if len(owners) == 1:
                chain, t_out, t_stats, sub_extras = fin.streams.chain, out, fin.stats, extras
                gone = int(fin.owner.shape[0])
            else:
                m = fin.owner == tid
                chain, t_out, t_stats = fin.streams.chain[m], tree_select(out, m), tree_select(fin.stats, m)
                sub_extras = {k: v[m] for k, v in extras.items()}
                gone = int(m.sum())
            if ticket.add_finished(chain, t_out, t_stats, sub_extras):
                completed.append(ticket)
            self.rows_of_ticket[tid] -= gone
            self._rows_by_priority[ticket.work.priority] -= gone
        for ticket in completed:
            del self.tickets[ticket.id]
            del self.rows_of_ticket[ticket.id]
        self.batch = None if every else _select(b, ~done)
        st = fin.stats
        # chains that made no proposal (raw) have no acceptance rate: leave them out of the histogram
        proposed = st.proposals > 0
        rates = (st.acceptance_sum[proposed] / st.proposals[proposed]).float().cpu()
        finished = ChainsFinished(
            model=self.key.model,
            sampler=self.key.sampler,
            acceptance_rates=tuple(rates.tolist()),
            logit_initial=tuple(st.logit_initial.float().cpu().tolist()),
            logit_final=tuple(st.logit_final.float().cpu().tolist()),
            samples=int(fin.t.shape[0]),
        )
        return completed, finished

    def drop(self, tickets: Sequence[Ticket]) -> None:
        """Remove every row of ``tickets`` (cancelled, expired or failed)."""
        ids = [t.id for t in tickets if t.id in self.tickets]
        if not ids or self.batch is None:
            for t in tickets:
                self.tickets.pop(t.id, None)
                self.rows_of_ticket.pop(t.id, None)
            return
        gone = torch.isin(self.batch.owner, torch.tensor(ids, device=self.batch.owner.device))
        for tid in ids:
            ticket = self.tickets.pop(tid)
            self._rows_by_priority[ticket.work.priority] -= self.rows_of_ticket.pop(tid)
        keep = ~gone
        self.batch = _select(self.batch, keep) if bool(keep.any()) else None

    def clear(self) -> list[Ticket]:
        """Empty the pool (after a failure); return the tickets that had rows in it."""
        tickets = list(self.tickets.values())
        self.tickets.clear()
        self.rows_of_ticket.clear()
        self.batch = None
        self._rows_by_priority = {p: 0 for p in Priority}
        return tickets

    def _trace(self, b: Batch, t_before: Tensor | None, rate: Tensor | None) -> None:
        tracing = [tk for tk in self.tickets.values() if tk.tracing]
        if not tracing:
            return
        out = self.algo.output(b.state)
        for tk in tracing:
            m = b.owner == tk.id
            if not bool(m.any()):
                continue
            if t_before is not None and rate is not None:
                tk.record_acceptance(t_before[m], rate[m])
            tk.record_trace(b.streams.chain[m], b.t[m], out.z[m], out.logit[m])
