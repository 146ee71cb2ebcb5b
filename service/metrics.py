"""Prometheus series for gansampler: the only module that imports ``prometheus_client``.

The engine and the API fill the plain stats objects of :mod:`service.engine.stats`; :class:`PrometheusSink`
implements the :class:`~service.engine.stats.StatsSink` protocol and turns them into series on its own
:class:`~prometheus_client.CollectorRegistry` (never the process-global one), so several apps can live in one
process. ``GET /metrics`` serves :meth:`PrometheusSink.render`.

Naming follows Prometheus' rules: every series of the service starts with ``gansampler_`` (beside the standard
``process_*``, ``python_info`` and ``python_gc_*`` of the server process), values are in base units (seconds,
bytes, ratios in [0, 1]), counters end in ``_total``, histograms have explicit buckets, and label values are
bounded (``model`` = ``name@version``, ``sampler`` = one of six names, ``route`` = a route template, ``status`` =
an HTTP status code, ``stage`` = ``initial`` | ``final``); never a seed or a request id.

Acceptance *rates* are not exported as gauges: they are ``rate(gansampler_mcmc_accepted_total[5m]) /
rate(gansampler_mcmc_proposals_total[5m])`` in PromQL, so they aggregate correctly over time and instances.
``deploy/README.md`` lists every series; the dashboard and alert rules in ``deploy/`` use them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from service.engine.stats import ChainsFinished, Gauges, RequestStats, StepStats

NAMESPACE = "gansampler"
# The classic text format (0.0.4): every series name here is a legacy-valid name, and every Prometheus reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Bucket boundaries (upper bounds; +Inf is implicit). Named so docs and dashboards can quote them.
REQUEST_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
STEP_DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)
BATCH_CHAINS_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
ACCEPTANCE_BUCKETS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 .. 1.0
LOGIT_BUCKETS: tuple[float, ...] = (
    -10.0, -8.0, -6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0,
)

# Job states that are always exported (0 when none), so dashboards and alerts see a series before the first job.
JOB_STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
LOGIT_STAGES: tuple[str, ...] = ("initial", "final")

_MS = ("model", "sampler")


class PrometheusSink:
    """A :class:`~service.engine.stats.StatsSink` that records into Prometheus metrics.

    Thread-safe: ``prometheus_client`` metrics are; the label-set bookkeeping of :meth:`set_gauges` holds a lock.
    """

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        """``process``: also export the process's own series (``process_*``: resident memory, CPU seconds, open
        files, start time; ``python_info``; ``python_gc_*``), as the default registry of ``prometheus_client``
        would, so memory growth and restarts show in Prometheus."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        n = NAMESPACE
        # --- HTTP -------------------------------------------------------------------------------------------
        self.requests = Counter(
            "requests", "HTTP requests answered, by route template and status code.",
            ["route", "status"], namespace=n, registry=r,
        )
        self.request_duration = Histogram(
            "request_duration_seconds", "HTTP request latency from arrival to response, by route template.",
            ["route"], namespace=n, registry=r, buckets=REQUEST_DURATION_BUCKETS,
        )
        self.queue_wait = Histogram(
            "queue_wait_seconds", "Time a sampling request waited before its first chain ran a step.",
            namespace=n, registry=r, buckets=QUEUE_WAIT_BUCKETS,
        )
        # --- engine steps -----------------------------------------------------------------------------------
        self.batch_chains = Histogram(
            "batch_chains", "Chains stepped together in one engine iteration of a pool (batch fill).",
            _MS, namespace=n, registry=r, buckets=BATCH_CHAINS_BUCKETS,
        )
        self.step_duration = Histogram(
            "step_duration_seconds", "Wall time of one engine iteration of a chain pool (all its rows).",
            _MS, namespace=n, registry=r, buckets=STEP_DURATION_BUCKETS,
        )
        self.chain_steps = Counter(
            "chain_steps", "Chain-steps run (rows x iterations).", _MS, namespace=n, registry=r,
        )
        self.proposals = Counter(
            "mcmc_proposals", "Metropolis-Hastings proposals made (rows that ran an accept test).",
            _MS, namespace=n, registry=r,
        )
        self.accepted = Counter(
            "mcmc_accepted", "Metropolis-Hastings proposals accepted; divide its rate by mcmc_proposals_total's.",
            _MS, namespace=n, registry=r,
        )
        self.nonfinite = Counter(
            "nonfinite", "Proposals rejected because the logit or gradient was not finite.",
            _MS, namespace=n, registry=r,
        )
        # --- finished chains --------------------------------------------------------------------------------
        self.chain_acceptance = BatchHistogram(
            f"{n}_chain_acceptance_ratio", "Per finished chain: mean of min(1, alpha) over its steps (ratio 0..1).",
            _MS, ACCEPTANCE_BUCKETS, r,
        )
        self.samples = Counter(
            "samples", "Samples returned (one per finished chain).", _MS, namespace=n, registry=r,
        )
        self.logit = BatchHistogram(
            f"{n}_discriminator_logit",
            "Calibrated discriminator logit of each chain's first (stage=initial) and returned (stage=final) state "
            "(no _sum: buckets are negative too; use histogram_quantile).",
            [*_MS, "stage"], LOGIT_BUCKETS, r,
        )
        # --- gauges -----------------------------------------------------------------------------------------
        self.queue_depth = Gauge(
            "queue_depth", "Chains waiting for admission into a pool.", namespace=n, registry=r,
        )
        self.queued_chain_steps = Gauge(
            "queued_chain_steps", "Admission-control load: chain-steps accepted but not yet run.",
            namespace=n, registry=r,
        )
        self.active_chains = Gauge(
            "active_chains", "Chains currently in a pool (being stepped).", namespace=n, registry=r,
        )
        self.device_memory = Gauge(
            "device_memory_bytes", "Memory per device and kind (e.g. models, allocated, reserved, total).",
            ["device", "kind"], namespace=n, registry=r,
        )
        self.model_ready = Gauge(
            "model_ready", "1 when the model version is loaded and serving, 0 otherwise.",
            ["model"], namespace=n, registry=r,
        )
        self.model_load = Gauge(
            "model_load_seconds", "Duration of the model version's most recent load (read, verify, build).",
            ["model"], namespace=n, registry=r,
        )
        self.model_warmup = Gauge(
            "model_warmup_seconds", "Duration of the model version's most recent warm-up after loading.",
            ["model"], namespace=n, registry=r,
        )
        self.jobs = Gauge("jobs", "Jobs by state.", ["state"], namespace=n, registry=r)
        self.pool_max_rows = Gauge(
            "pool_max_rows",
            "Most proposal rows one step of a chain pool may evaluate on its device: on CUDA what fits the memory "
            "budget (measured at the model's warm-up, or at the first request of non-default options; halved after "
            "an out-of-memory error), else a setting.",
            ["model", "sampler", "device"], namespace=n, registry=r,
        )
        for state in JOB_STATES:
            self.jobs.labels(state=state).set(0)

        self._lock = threading.Lock()
        self._memory_keys: set[tuple[str, str]] = set()
        self._ready_keys: set[tuple[str]] = set()
        self._job_keys: set[tuple[str]] = {(state,) for state in JOB_STATES}
        self._pool_keys: set[tuple[str, str, str]] = set()

    # --- StatsSink ------------------------------------------------------------------------------------------
    def record_step(self, s: StepStats) -> None:
        labels = (s.model, s.sampler)
        self.batch_chains.labels(*labels).observe(s.rows)
        self.step_duration.labels(*labels).observe(s.seconds)
        self.chain_steps.labels(*labels).inc(s.chain_steps)
        self.proposals.labels(*labels).inc(s.proposals)
        self.accepted.labels(*labels).inc(s.accepted)
        self.nonfinite.labels(*labels).inc(s.nonfinite)

    def record_chains(self, s: ChainsFinished) -> None:
        labels = (s.model, s.sampler)
        self.chain_acceptance.observe_many(labels, s.acceptance_rates)
        self.logit.observe_many((*labels, "initial"), s.logit_initial)
        self.logit.observe_many((*labels, "final"), s.logit_final)
        self.samples.labels(*labels).inc(s.samples)

    def record_request(self, s: RequestStats) -> None:
        self.requests.labels(s.route, str(s.status)).inc()
        self.request_duration.labels(s.route).observe(s.seconds)
        if s.queue_seconds is not None:
            self.queue_wait.observe(s.queue_seconds)

    def record_model_load(self, model: str, seconds: float, warmup_seconds: float) -> None:
        self.model_load.labels(model).set(seconds)
        self.model_warmup.labels(model).set(warmup_seconds)

    def set_gauges(self, g: Gauges) -> None:
        self.queue_depth.set(g.queue_depth)
        self.queued_chain_steps.set(g.queued_chain_steps)
        self.active_chains.set(g.active_chains)
        jobs = {(state,): 0.0 for state in JOB_STATES}
        jobs.update({(state,): float(count) for state, count in g.jobs.items()})
        with self._lock:
            self._memory_keys = _replace(
                self.device_memory, self._memory_keys, {k: float(v) for k, v in g.device_memory_bytes.items()}
            )
            self._ready_keys = _replace(
                self.model_ready, self._ready_keys, {(m,): float(ready) for m, ready in g.models_ready.items()}
            )
            self._job_keys = _replace(self.jobs, self._job_keys, jobs)
            self._pool_keys = _replace(
                self.pool_max_rows, self._pool_keys, {k: float(v) for k, v in g.pool_max_rows.items()}
            )

    # --- exposition -----------------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition (format 0.0.4) of this sink's registry: ``(body, content_type)``."""
        return generate_latest(self.registry), CONTENT_TYPE


class BatchHistogram(Collector):
    """A labelled histogram that takes a whole batch of observations per call (one per finished chain).

    ``prometheus_client``'s Histogram costs about a microsecond per ``observe``; a pool that retires 1024 chains
    would spend milliseconds of the device worker's time on Python calls. This bins a batch with one numpy
    ``searchsorted`` and adds the counts under a lock. Non-finite values are skipped (a non-finite proposal is
    counted by ``nonfinite_total``). Exposition is the standard histogram: cumulative ``_bucket{le}``, ``_count``,
    and ``_sum`` unless a bucket bound is negative (a sum of signed values is not a counter).
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be strictly increasing, got {buckets}")
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._bounds = np.asarray(bounds, dtype=np.float64)
        self._le = [floatToGoString(b) for b in bounds] + ["+Inf"]
        self._with_sum = bounds[0] >= 0
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], np.ndarray] = {}  # per label values: (len(buckets) + 1,) int64
        self._sums: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def observe_many(self, labelvalues: Sequence[str], values: Sequence[float]) -> None:
        """Observe every finite value of ``values`` (shape (n,)) under ``labelvalues``."""
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {tuple(labelvalues)}")
        key = tuple(str(v) for v in labelvalues)
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        x = x[np.isfinite(x)]
        # bin i holds bounds[i-1] < v <= bounds[i] (Prometheus' "le"); the last bin is +Inf
        counts = np.bincount(np.searchsorted(self._bounds, x, side="left"), minlength=len(self._le))
        total = float(x.sum())
        with self._lock:
            if key in self._counts:
                self._counts[key] += counts
                self._sums[key] += total
            else:
                self._counts[key] = counts.astype(np.int64)
                self._sums[key] = total

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.documentation, "histogram")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = [(k, np.cumsum(c), self._sums[k]) for k, c in self._counts.items()]
        metric = Metric(self.name, self.documentation, "histogram")
        for key, cumulative, total in series:
            labels = dict(zip(self.labelnames, key, strict=True))
            for le, count in zip(self._le, cumulative.tolist(), strict=True):
                metric.add_sample(f"{self.name}_bucket", {**labels, "le": le}, float(count))
            metric.add_sample(f"{self.name}_count", labels, float(cumulative[-1]))
            if self._with_sum:
                metric.add_sample(f"{self.name}_sum", labels, total)
        yield metric


_K = TypeVar("_K", bound=tuple[str, ...])


def _replace(gauge: Gauge, old: set[_K], new: dict[_K, float]) -> set[_K]:
    """Set ``gauge`` to exactly ``new``: label sets present before but absent now are removed (an unloaded model
    or a device that went away stops being exported rather than freezing at its last value)."""
    for key in old - new.keys():
        gauge.remove(*key)
    for key, value in new.items():
        gauge.labels(*key).set(value)
    return set(new)
