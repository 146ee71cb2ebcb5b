"""What the engine runs (:class:`Work`), the handle a caller holds (:class:`Ticket`) and what it gets back
(:class:`ChainResult`).

A ticket's chains may be admitted into its pool over several iterations (when the pool is full) and retire at
different iterations (per-row lengths, DRS); retired rows are collected here by chain index and put in order when
the last one retires. Fields written by the worker thread and read elsewhere are plain ints/floats (atomic reads).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

import torch
from torch import Tensor

from service.samplers.base import ChainOutput, SamplingAlgorithm, tree_cat
from service.samplers.driver import MAX_LENGTH_FACTOR

_ids = itertools.count(1)


class Priority(IntEnum):
    """Admission class. Lower runs first; job chains also hold at most a share of a pool's rows."""

    INTERACTIVE = 0
    JOB = 1


class PoolKey(NamedTuple):
    """Chains that can share one batch: same networks, same sampler and categorical options, same device.

    ``generation`` tells loads of the same model id apart: after a reload new requests start a new pool while the
    old one drains on the old networks.
    """

    model: str
    sampler: str
    options: Hashable
    device: str
    generation: int = 0


@dataclass(frozen=True)
class Work:
    """A request for ``n`` chains of ``algo`` with per-request numeric ``params`` and chain length ``steps``.

    ``algo`` is the sampler built over the model's pair (one per pool key; the pool keeps the first it sees).
    ``trace_every`` > 0 records logit, energy and ‖z‖ every that many steps plus the per-step acceptance curve.
    ``timeout_s``: deadline measured from submission, queue time included; None for none.
    ``threads``: CPU threads torch uses while the pool steps (the model's ``[runtime] threads``); None: unchanged.
    """

    key: PoolKey
    algo: SamplingAlgorithm
    n: int
    seed: int
    steps: int
    params: Mapping[str, float] = field(default_factory=dict)
    priority: Priority = Priority.INTERACTIVE
    timeout_s: float | None = None
    trace_every: int = 0
    threads: int | None = None

    @property
    def chain_steps(self) -> int:
        """Admission cost: chain-steps (a one-shot sampler still costs one step per chain)."""
        return self.n * max(self.steps, 1)


class Traces(NamedTuple):
    """Per-chain scalar traces every ``every`` steps (t = 0, every, 2·every, ...): (n, points) float32 each;
    ``curve``: (steps,) per-step acceptance rate averaged over the request's chains."""

    every: int
    logit: Tensor
    energy: Tensor
    z_norm: Tensor
    curve: Tensor


class ChainResult(NamedTuple):
    """A finished request, rows in chain order, on CPU.

    output: ChainOutput(z (n, *latent), x (n, *output), logit (n,)).
    stats:  the driver's ChainStats, (n,) per field.
    extras: sampler-specific per-chain tensors (n,), e.g. ``restarted``, ``ess``.
    """

    output: ChainOutput
    stats: Any
    extras: dict[str, Tensor]
    traces: Traces | None
    queue_s: float
    compute_s: float


class Ticket:
    """The caller's handle on submitted work. ``future`` resolves to a :class:`ChainResult` or an EngineError."""

    def __init__(self, work: Work) -> None:
        self.id = next(_ids)
        self.work = work
        self.future: concurrent.futures.Future[ChainResult] = concurrent.futures.Future()
        self.submitted = time.monotonic()
        self.deadline = None if work.timeout_s is None else self.submitted + work.timeout_s
        self.admitted = 0  # chains handed to the pool so far
        self.steps_done = 0  # chain-steps run so far (progress)
        self.released = 0  # admission chain-steps already given back
        self.first_run: float | None = None
        self.cancel_reason: str | None = None
        self._pieces: list[tuple[Tensor, ChainOutput, Any, dict[str, Tensor]]] = []
        self._retired = 0
        self.traces: Traces | None = None  # allocated by the worker at the first record (see _trace_buffers)
        self._curve_count: Tensor | None = None

    @property
    def tracing(self) -> bool:
        """The request asked for traces (``trace_every > 0``)."""
        return self.work.trace_every > 0

    @property
    def total_chain_steps(self) -> int:
        return self.work.chain_steps

    @property
    def progress(self) -> float:
        """Fraction of chain-steps done, in [0, 1]."""
        return 1.0 if self.future.done() else min(1.0, self.steps_done / max(self.total_chain_steps, 1))

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the worker to drop this ticket's chains at the next step boundary."""
        if self.cancel_reason is None:
            self.cancel_reason = reason

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    # --- called by the worker thread only --------------------------------------------------------------------

    def _trace_buffers(self) -> tuple[Traces, Tensor]:
        """The trace buffers, allocated at first use. Allocating them in ``__init__`` ran in the event loop (which
        submits), where filling (n, points) with NaN is a parallel torch op once n x points passes torch's grain
        size: the loop thread then kept an OpenMP team of its own beside the worker's, and every later step of a
        served MLP ran about 2x slower (``service.engine.threads``)."""
        if self.traces is None or self._curve_count is None:
            w = self.work
            length = MAX_LENGTH_FACTOR * max(w.steps, 1)  # MH-GAN's real-init restart may run past K
            points = length // w.trace_every + 1
            z = torch.full((w.n, points), math.nan)
            self.traces = Traces(w.trace_every, z, z.clone(), z.clone(), torch.zeros(length))
            self._curve_count = torch.zeros(length)
        return self.traces, self._curve_count

    def record_trace(self, chain: Tensor, t: Tensor, z: Tensor, logit: Tensor) -> None:
        """Store the trace points of some of this ticket's rows: chain (k,), t (k,), z (k, ...), logit (k,)."""
        traces, _ = self._trace_buffers()
        every = traces.every
        keep = (t % every) == 0
        if not bool(keep.any()):
            return
        c, col = chain[keep].cpu(), (t[keep] // every).cpu()
        zz, lg = z[keep].detach().flatten(1).float().cpu(), logit[keep].detach().float().cpu()
        traces.logit[c, col] = lg
        traces.energy[c, col] = 0.5 * zz.pow(2).sum(1) - lg
        traces.z_norm[c, col] = zz.norm(dim=1)

    def record_acceptance(self, t: Tensor, rate: Tensor) -> None:
        """Accumulate this step's acceptance rate of some rows at their step index ``t`` (before the step)."""
        traces, count = self._trace_buffers()
        idx = t.clamp(max=traces.curve.shape[0] - 1).cpu()
        traces.curve.index_add_(0, idx, rate.detach().float().cpu())
        count.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float32))

    def add_finished(self, chain: Tensor, output: ChainOutput, stats: Any, extras: dict[str, Tensor]) -> bool:
        """Collect retired rows; True when this was the last chain of the ticket."""
        to_cpu = {k: v.detach().cpu() for k, v in extras.items()}
        out = ChainOutput(*(f.detach().cpu() for f in output))
        st = type(stats)(*(None if f is None else f.detach().cpu() for f in stats))
        self._pieces.append((chain.cpu(), out, st, to_cpu))
        self._retired += int(chain.shape[0])
        return self._retired >= self.work.n

    def assemble(self, finished: float) -> ChainResult:
        """The result in chain order (only after the last chain retired).

        A ticket's rows keep their chain order in the pool (admissions take chains in order and are appended;
        retiring and dropping rows keeps the order of the rest), so one piece is already in chain order: it is
        returned as is, with no gather. Pieces retired at different steps are merged by chain index."""
        if len(self._pieces) == 1:
            _, out, stats, extras = self._pieces[0]
        else:
            chains = torch.cat([p[0] for p in self._pieces])
            order = torch.argsort(chains)
            out = ChainOutput(*(f[order] for f in tree_cat([p[1] for p in self._pieces])))
            stats = tree_cat([p[2] for p in self._pieces])
            stats = type(stats)(*(None if f is None else f[order] for f in stats))
            keys = set(self._pieces[0][3])
            extras = {k: torch.cat([p[3][k] for p in self._pieces])[order] for k in keys}
        traces = None
        if self.tracing:
            traces, count = self._trace_buffers()
            ran = int((count > 0).sum())  # steps actually run by the longest chain
            points = ran // traces.every + 1
            traces = Traces(
                traces.every,
                traces.logit[:, :points],
                traces.energy[:, :points],
                traces.z_norm[:, :points],
                traces.curve[:ran] / count[:ran].clamp(min=1),
            )
        first = self.first_run if self.first_run is not None else finished
        self._pieces = []
        return ChainResult(out, stats, extras, traces, first - self.submitted, finished - first)
