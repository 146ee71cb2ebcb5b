"""``GET /metrics`` of the app as the server builds it (default sink): the process's own series beside the service's,
and the request statuses the error-rate alert reads."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.api.errors import ERROR_TABLE, INTERNAL
from service.config import Settings

from . import promql

LINUX = sys.platform.startswith("linux")
# The statuses GansamplerHighErrorRate leaves out, and the one error type it counts (its rule reads status="500").
NOT_SERVER_FAULTS = {503: "model_unavailable", 504: "timeout"}
SERVER_FAULT = (500, "internal_error")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app over an empty models directory (nothing to load: fast), with its default PrometheusSink."""
    (tmp_path / "models").mkdir()
    app = create_app(Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_metrics_serve_the_process_series(client: httpx.AsyncClient) -> None:
    """Memory, CPU, open files and restarts of the server show in Prometheus (the sink's registry is private, so
    prometheus_client's default process collectors would not reach it)."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    got = families(r.text)
    (info,) = got["python_info"]
    assert dict(info)["implementation"] == platform.python_implementation()
    assert any(name.startswith("python_gc_") for name in got)
    if not LINUX:
        pytest.skip("process_* series are read from /proc (Linux only)")
    (rss,) = got["process_resident_memory_bytes"].values()
    assert rss > 10 * 2**20  # a Python process with torch imported: tens of MB at least
    (fds,) = got["process_open_fds"].values()
    assert 3 <= fds <= len(os.listdir("/proc/self/fd")) + 64
    (start,) = got["process_start_time_seconds"].values()
    assert time.time() - 24 * 3600 < start <= time.time()
    (cpu,) = got["process_cpu_seconds_total"].values()
    assert cpu > 0
    # the dashboard's and the rules' process_* queries name series the server exports
    named = {n for q in [*promql.dashboard_queries(), *promql.rule_queries()] for n in promql.series_names(q.expr)
             if n.startswith("process_")}
    assert named and named <= {n.removesuffix("_total") for n in got} | set(got), named - set(got)


async def test_requests_are_counted_by_status_and_route(client: httpx.AsyncClient) -> None:
    """The error-rate rule tells probes from API requests by route, and server faults by status."""
    assert (await client.get("/readyz")).status_code == 503  # no model: not ready (a probe, not an API request)
    r = await client.post("/v1/samples/mh", json={"model": "nope", "n": 1})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    got = families((await client.get("/metrics")).text)["gansampler_requests_total"]
    assert got[(("route", "/readyz"), ("status", "503"))] == 1.0
    assert got[(("route", "/v1/samples/{sampler}"), ("status", "404"))] == 1.0


def test_each_status_names_one_error_type() -> None:
    """Status and error type map one to one, so the rules' ``status="500"`` is exactly the ``internal_error`` type
    (a bug, a model failing as it runs), 503 is ``model_unavailable`` (unloaded, loading, draining: deliberate) and
    504 ``timeout`` (the request's own timeout_s). A new error type on 500, 503 or 504 must revisit
    GansamplerHighErrorRate (deploy/prometheus/alerts.yml)."""
    by_status: dict[int, set[str]] = {}
    for status, kind in [*ERROR_TABLE.values(), INTERNAL]:
        by_status.setdefault(status, set()).add(kind)
    assert all(len(kinds) == 1 for kinds in by_status.values()), by_status
    assert by_status[SERVER_FAULT[0]] == {SERVER_FAULT[1]}
    for status, kind in NOT_SERVER_FAULTS.items():
        assert by_status[status] == {kind}
    rule = next(r["expr"] for r in promql.rules() if r.get("record") == "gansampler:requests_500:ratio_rate5m")
    assert 'status="500"' in rule
