"""Engines over analytic pairs, and an observer that records batch sizes and can hold the worker at a step."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import torch
from torch import Tensor

from service.engine.engine import Engine, EngineConfig
from service.engine.ticket import PoolKey, Priority, Work
from service.engine.worker import EngineObserver, StepEvent
from service.samplers import SAMPLERS, GanPair

GATE_TIMEOUT_S = 30.0  # a gate that never opens fails the test instead of hanging it


def gauss_logit(x: Tensor) -> Tensor:
    """d*(x) = log N(x; 1, 0.5²) − log N(x; 0, 1) on the first coordinate, (B,)."""
    x = x.reshape(x.shape[0], -1)[:, 0]
    return -0.5 * ((x - 1.0) / 0.5) ** 2 - math.log(0.5) + 0.5 * x**2


GAUSS = GanPair(lambda z: z, gauss_logit, (1,))


def failing_logit(x: Tensor) -> Tensor:
    raise RuntimeError("synthetic failure")


FAILING = GanPair(lambda z: z, failing_logit, (1,))


def config(max_batch: int = 64, queue: int = 10**9, steps_per_iteration: int = 1, job_fraction: float = 0.5,
           devices: tuple[str, ...] = ("cpu",), block_proposals: int = 1) -> EngineConfig:
    """Engine settings for tests: one step per pool step unless ``block_proposals`` > 1 (proposal blocks)."""
    return EngineConfig(devices, max_batch, steps_per_iteration, job_fraction, queue, 1,
                        block_proposals=block_proposals)


def work(sampler: str = "mh", n: int = 4, seed: int = 0, steps: int = 20, pair: GanPair = GAUSS, model: str = "gauss@1",
         priority: Priority = Priority.INTERACTIVE, timeout_s: float | None = None, trace_every: int = 0,
         options: object = None, params: dict[str, float] | None = None) -> Work:
    entry = SAMPLERS[sampler]
    opts = entry.options_cls() if options is None else options
    algo = _algo(sampler, pair, opts)
    return Work(PoolKey(model, sampler, opts, "cpu"), algo, n, seed, steps, params or {}, priority, timeout_s,
                trace_every)


_ALGOS: dict[tuple[str, int, object], object] = {}


def _algo(sampler: str, pair: GanPair, options: object) -> object:
    key = (sampler, id(pair), options)
    if key not in _ALGOS:
        _ALGOS[key] = SAMPLERS[sampler].cls(pair, options)
    return _ALGOS[key]


class Recorder(EngineObserver):
    """Records every step; ``hold(pred)`` makes the worker wait inside the step where ``pred(event)`` is first true
    until ``release()`` (events, never sleeps)."""

    def __init__(self) -> None:
        self.steps: list[StepEvent] = []
        self.submitted: list[int] = []
        self.held = threading.Event()
        self._release = threading.Event()
        self._pred: Callable[[StepEvent], bool] | None = None
        self._lock = threading.Lock()
        self.on_submit_hook: Callable[[int], None] | None = None

    def hold(self, pred: Callable[[StepEvent], bool]) -> None:
        self._pred = pred
        self._release.clear()
        self.held.clear()

    def release(self) -> None:
        self._release.set()

    def on_submit(self, ticket: object) -> None:
        with self._lock:
            self.submitted.append(ticket.id)  # type: ignore[attr-defined]
            n = len(self.submitted)
        if self.on_submit_hook is not None:
            self.on_submit_hook(n)

    def on_step(self, event: StepEvent) -> None:
        with self._lock:
            self.steps.append(event)
        pred = self._pred
        if pred is not None and pred(event):
            self._pred = None
            self.held.set()
            assert self._release.wait(GATE_TIMEOUT_S), "gate never released"

    def rows(self) -> list[int]:
        with self._lock:
            return [e.rows for e in self.steps]


def engine(cfg: EngineConfig | None = None, observer: EngineObserver | None = None) -> Engine:
    e = Engine(cfg or config(), observer=observer)
    e.start()
    return e


def result_equal(a: object, b: object) -> bool:
    """Bit-identical outputs and statistics of two ChainResults."""
    return all(torch.equal(x, y) for x, y in zip(a.output, b.output, strict=True)) and all(  # type: ignore[attr-defined]
        torch.equal(x, y) for x, y in zip(a.stats, b.stats, strict=True)  # type: ignore[attr-defined]
    )
