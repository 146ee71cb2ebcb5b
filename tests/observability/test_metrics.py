"""PrometheusSink: stats objects in, Prometheus text exposition out (parsed back with prometheus_client's parser)."""

from __future__ import annotations

import math
import subprocess
import sys
import threading

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.engine.stats import Gauges, NullSink, StepStats
from service.metrics import ACCEPTANCE_BUCKETS, JOB_STATES, PrometheusSink

from .tools import MODEL, ROUTE, feed, require_binary


def samples(sink: PrometheusSink) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered exposition as {(name, labels): value}."""
    body, _ = sink.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(sink: PrometheusSink, name: str, **labels: str) -> float:
    return samples(sink)[(name, frozenset(labels.items()))]


@pytest.fixture
def sink() -> PrometheusSink:
    s = PrometheusSink()
    feed(s)
    return s


def test_implements_the_stats_sink_protocol(sink: PrometheusSink) -> None:
    for method in ("record_step", "record_chains", "record_request", "record_model_load", "set_gauges"):
        assert callable(getattr(sink, method)), method
    feed(NullSink())  # the protocol's reference implementation accepts the same calls


def test_step_counters_and_histograms(sink: PrometheusSink) -> None:
    ms = {"model": MODEL, "sampler": "mh"}
    assert value(sink, "gansampler_chain_steps_total", **ms) == 68  # steps run (a block runs several per row)
    assert value(sink, "gansampler_mcmc_proposals_total", **ms) == 12
    assert value(sink, "gansampler_mcmc_accepted_total", **ms) == 7
    assert value(sink, "gansampler_nonfinite_total", **ms) == 1
    assert value(sink, "gansampler_batch_chains_count", **ms) == 2
    assert value(sink, "gansampler_batch_chains_sum", **ms) == 12
    assert value(sink, "gansampler_batch_chains_bucket", **ms, le="4.0") == 1
    assert value(sink, "gansampler_batch_chains_bucket", **ms, le="8.0") == 2
    assert value(sink, "gansampler_step_duration_seconds_sum", **ms) == pytest.approx(0.006)


def test_finished_chains(sink: PrometheusSink) -> None:
    ms = {"model": MODEL, "sampler": "mh"}
    assert value(sink, "gansampler_samples_total", **ms) == 3
    assert value(sink, "gansampler_chain_acceptance_ratio_count", **ms) == 3
    assert value(sink, "gansampler_chain_acceptance_ratio_sum", **ms) == pytest.approx(1.59)
    assert value(sink, "gansampler_chain_acceptance_ratio_bucket", **ms, le="0.15") == 1
    assert value(sink, "gansampler_chain_acceptance_ratio_bucket", **ms, le="0.5") == 2
    assert value(sink, "gansampler_chain_acceptance_ratio_bucket", **ms, le="1.0") == 3
    assert value(sink, "gansampler_discriminator_logit_count", **ms, stage="initial") == 3
    assert value(sink, "gansampler_discriminator_logit_bucket", **ms, stage="initial", le="-1.0") == 1
    assert value(sink, "gansampler_discriminator_logit_bucket", **ms, stage="initial", le="0.0") == 2
    # the NaN final logit is dropped (non-finite proposals are counted by nonfinite_total)
    assert value(sink, "gansampler_discriminator_logit_count", **ms, stage="final") == 2
    assert value(sink, "gansampler_discriminator_logit_bucket", **ms, stage="final", le="0.5") == 1
    # negative buckets: no _sum (it would not be monotonic); the dashboard uses quantiles instead
    assert ("gansampler_discriminator_logit_sum", frozenset({**ms, "stage": "final"}.items())) not in samples(sink)


def test_acceptance_buckets_cover_the_unit_interval() -> None:
    assert ACCEPTANCE_BUCKETS[-1] == 1.0
    assert list(ACCEPTANCE_BUCKETS) == sorted(ACCEPTANCE_BUCKETS)
    assert len(ACCEPTANCE_BUCKETS) >= 10  # fine enough for the dashboard's heat map


def test_requests(sink: PrometheusSink) -> None:
    assert value(sink, "gansampler_requests_total", route=ROUTE, status="200") == 1
    assert value(sink, "gansampler_requests_total", route=ROUTE, status="429") == 1
    assert value(sink, "gansampler_request_duration_seconds_count", route=ROUTE) == 2
    assert value(sink, "gansampler_request_duration_seconds_sum", route=ROUTE) == pytest.approx(0.301)
    # only requests that report a queue time are observed
    assert value(sink, "gansampler_queue_wait_seconds_count") == 1
    assert value(sink, "gansampler_queue_wait_seconds_sum") == pytest.approx(0.01)


def test_gauges_and_model_load(sink: PrometheusSink) -> None:
    assert value(sink, "gansampler_queue_depth") == 5
    assert value(sink, "gansampler_queued_chain_steps") == 640
    assert value(sink, "gansampler_active_chains") == 12
    assert value(sink, "gansampler_device_memory_bytes", device="cpu", kind="models") == 123456
    assert value(sink, "gansampler_model_ready", model=MODEL) == 1
    assert value(sink, "gansampler_model_load_seconds", model=MODEL) == pytest.approx(0.8)
    assert value(sink, "gansampler_model_warmup_seconds", model=MODEL) == pytest.approx(0.2)
    assert value(sink, "gansampler_jobs", state="running") == 2
    assert value(sink, "gansampler_pool_max_rows", model=MODEL, sampler="mh", device="cpu") == 4096
    for state in set(JOB_STATES) - {"running"}:
        assert value(sink, "gansampler_jobs", state=state) == 0


def test_set_gauges_drops_label_sets_that_went_away(sink: PrometheusSink) -> None:
    sink.set_gauges(Gauges(device_memory_bytes={("cuda:0", "allocated"): 7}, models_ready={"ring@2": False},
                           jobs={"custom": 1}))
    got = samples(sink)
    assert ("gansampler_model_ready", frozenset({("model", MODEL)})) not in got
    assert got[("gansampler_model_ready", frozenset({("model", "ring@2")}))] == 0
    assert ("gansampler_device_memory_bytes", frozenset({("device", "cpu"), ("kind", "models")})) not in got
    assert got[("gansampler_device_memory_bytes", frozenset({("device", "cuda:0"), ("kind", "allocated")}))] == 7
    assert got[("gansampler_jobs", frozenset({("state", "running")}))] == 0  # known states stay, at 0
    assert got[("gansampler_jobs", frozenset({("state", "custom")}))] == 1
    assert not any(name == "gansampler_pool_max_rows" for name, _ in got)  # no pool sized: no series
    sink.set_gauges(Gauges(pool_max_rows={(MODEL, "mh", "cuda:1"): 96}))
    got = samples(sink)
    assert got[("gansampler_pool_max_rows", frozenset({("model", MODEL), ("sampler", "mh"), ("device", "cuda:1")}))] == 96
    assert ("gansampler_pool_max_rows", frozenset({("model", MODEL), ("sampler", "mh"), ("device", "cpu")})) not in got
    sink.set_gauges(Gauges())
    assert ("gansampler_jobs", frozenset({("state", "custom")})) not in samples(sink)


def test_job_states_exported_before_any_job() -> None:
    assert {value(PrometheusSink(), "gansampler_jobs", state=s) for s in JOB_STATES} == {0.0}


def test_sinks_have_their_own_registries() -> None:
    a, b = PrometheusSink(), PrometheusSink()  # a second sink in one process must not raise "Duplicated timeseries"
    feed(a)
    assert ("gansampler_samples_total", frozenset({("model", MODEL), ("sampler", "mh")})) not in samples(b)
    registry = CollectorRegistry()
    assert PrometheusSink(registry).registry is registry


PROCESS_PREFIXES = ("process_", "python_")  # prometheus_client's standard collectors


def test_the_server_process_is_exported(sink: PrometheusSink) -> None:
    """Memory growth, CPU and restarts show in Prometheus, as with prometheus_client's default registry."""
    names = {f.name for f in text_string_to_metric_families(sink.render()[0].decode())}
    assert {"python_info", "python_gc_collections"} <= names
    if sys.platform.startswith("linux"):
        assert {"process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
                "process_start_time_seconds"} <= names
    assert not any(n.startswith(PROCESS_PREFIXES) for n in {
        f.name for f in text_string_to_metric_families(PrometheusSink(process=False).render()[0].decode())})


def test_render_is_text_format_with_bounded_labels(sink: PrometheusSink) -> None:
    body, content_type = sink.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(body.decode()))
    assert families
    for family in families:
        assert family.name.startswith(("gansampler_", *PROCESS_PREFIXES)), family.name
        assert family.documentation, f"{family.name} has no HELP text"
        for s in family.samples:
            assert not ({"seed", "request_id", "chain", "job_id", "id"} & s.labels.keys()), s
            assert math.isfinite(s.value) or s.labels.get("le") == "+Inf", s


def test_concurrent_recording_is_exact() -> None:
    sink = PrometheusSink()
    threads, per_thread = 8, 500
    step = StepStats(MODEL, "rep", "cpu", rows=2, proposals=2, accepted=1, nonfinite=0, seconds=0.001,
                     chain_steps=2)
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            sink.record_step(step)
            sink.set_gauges(Gauges(models_ready={MODEL: True}))

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert value(sink, "gansampler_mcmc_accepted_total", model=MODEL, sampler="rep") == threads * per_thread
    assert value(sink, "gansampler_chain_steps_total", model=MODEL, sampler="rep") == 2 * threads * per_thread


def test_promtool_check_metrics(sink: PrometheusSink) -> None:
    promtool = require_binary("promtool")
    body, _ = sink.render()
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def test_batch_histogram_matches_prometheus_client_histogram() -> None:
    """Bins, counts and sum equal prometheus_client's own Histogram fed one value at a time, including values
    exactly on a bound (Prometheus' ``le`` is inclusive) and beyond the last one."""
    from prometheus_client import Histogram

    from service.metrics import ACCEPTANCE_BUCKETS, BatchHistogram

    values = [0.0, 0.05, 0.050001, 0.1, 0.33, 0.5, 0.95, 1.0, 1.5, 0.999999, 0.25, 0.25]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("x_ratio", "doc", ["model"], ACCEPTANCE_BUCKETS, ours)
    batch.observe_many(["m"], values[:5])
    batch.observe_many(["m"], [*values[5:], float("nan"), float("inf")])  # non-finite values are skipped
    reference = Histogram("x_ratio", "doc", ["model"], registry=theirs, buckets=ACCEPTANCE_BUCKETS)
    for v in values:
        reference.labels("m").observe(v)

    def parsed(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        from prometheus_client.exposition import generate_latest

        text = generate_latest(registry).decode()
        return {(s.name, s.labels.get("le", "")): s.value for f in text_string_to_metric_families(text)
                for s in f.samples if not s.name.endswith("_created")}

    got, want = parsed(ours), parsed(theirs)
    assert got.keys() == want.keys()
    for key, v in want.items():
        assert got[key] == pytest.approx(v), key


def test_batch_histogram_rejects_bad_input() -> None:
    from service.metrics import BatchHistogram

    with pytest.raises(ValueError, match="strictly increasing"):
        BatchHistogram("h", "doc", [], (1.0, 0.5), CollectorRegistry())
    h = BatchHistogram("h", "doc", ["model"], (0.5, 1.0), CollectorRegistry())
    with pytest.raises(ValueError, match="expected labels"):
        h.observe_many(["m", "extra"], [0.1])
