"""Plain stats objects the engine and the API fill; ``service.metrics`` turns them into Prometheus series.

Nothing here imports prometheus_client. The engine holds a :class:`StatsSink` (``NullSink`` by default) and calls
it from its worker thread or the event loop; sinks must be cheap and thread-safe.

Label values are bounded: ``model`` is a model id ``name@version``, ``sampler`` one of the six sampler names,
``route`` the route template (``/v1/samples/{sampler}``), never a seed or request id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StepStats:
    """One engine iteration of one chain pool."""

    model: str
    sampler: str
    device: str
    rows: int  # chains stepped together (batch fill)
    proposals: int  # MH proposals made this step (rows that ran an accept test)
    accepted: int
    nonfinite: int
    seconds: float
    chain_steps: int  # steps run in all: rows × steps per row (a proposal block runs several per row)


@dataclass(frozen=True, slots=True)
class ChainsFinished:
    """Chains that retired in one iteration (all of one pool)."""

    model: str
    sampler: str
    acceptance_rates: tuple[float, ...]  # per chain: mean of min(1, alpha)
    logit_initial: tuple[float, ...]
    logit_final: tuple[float, ...]
    samples: int  # samples produced (== chains for all samplers)


@dataclass(frozen=True, slots=True)
class RequestStats:
    route: str  # route template
    status: int
    seconds: float
    queue_seconds: float | None = None  # time before the first chain of the request ran


@dataclass(slots=True)
class Gauges:
    """Point-in-time values, set by the engine after each iteration and by the registry after loads."""

    queue_depth: int = 0  # waiting chains (not yet admitted into a pool)
    queued_chain_steps: int = 0  # admission-control load: chain-steps accepted but not yet run
    active_chains: int = 0
    device_memory_bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # (device, kind) -> bytes
    models_ready: dict[str, bool] = field(default_factory=dict)  # model id -> ready
    jobs: dict[str, int] = field(default_factory=dict)  # job state -> count
    # (model, sampler, device) -> most proposal rows one step of that pool may evaluate (its memory budget)
    pool_max_rows: dict[tuple[str, str, str], int] = field(default_factory=dict)


class StatsSink(Protocol):
    def record_step(self, s: StepStats) -> None: ...

    def record_chains(self, s: ChainsFinished) -> None: ...

    def record_request(self, s: RequestStats) -> None: ...

    def record_model_load(self, model: str, seconds: float, warmup_seconds: float) -> None: ...

    def set_gauges(self, g: Gauges) -> None: ...


class NullSink:
    """A sink that drops everything (library use, tests)."""

    def record_step(self, s: StepStats) -> None:
        pass

    def record_chains(self, s: ChainsFinished) -> None:
        pass

    def record_request(self, s: RequestStats) -> None:
        pass

    def record_model_load(self, model: str, seconds: float, warmup_seconds: float) -> None:
        pass

    def set_gauges(self, g: Gauges) -> None:
        pass
