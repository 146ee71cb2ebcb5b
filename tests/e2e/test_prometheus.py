"""End to end: the real server, scraped by a real Prometheus, answers every dashboard and alert query.

Starts ``gansampler-server serve`` on a free loopback port over the shipped ``models/``, and Debian's
``prometheus`` on another with a generated config that scrapes it every second and loads ``deploy/``'s rules
(evaluated every second). Drives sampling traffic through every sampler each ready model supports, in two rounds
(so every counter has increased while being scraped and rate() has something to see), waits until Prometheus
has scraped the final counts, then evaluates every PromQL expression of the dashboard (template variables
substituted), the rules and the alert conditions' operands through the HTTP API: each must return data with at
least one finite value. And Prometheus' accepted/proposals must equal the totals the API's diagnostics returned.

With ``CI=true`` a missing ``prometheus`` binary is a failure, not a skip.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import eq
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/e2e has no __init__.py: make the observability helpers importable
    sys.path.insert(0, str(ROOT))

from tests.e2e.live_server import free_port  # noqa: E402
from tests.observability import promql  # noqa: E402
from tests.observability.tools import require_binary  # noqa: E402

pytestmark = pytest.mark.slow

MODELS_DIR = ROOT / "models"
SCRAPE_INTERVAL = "1s"
# Replaces $__rate_interval etc.: spans the whole test run, so rates see both rounds of traffic.
QUERY_WINDOW = "10m"
SERVER_START_S = 180.0
PROMETHEUS_START_S = 60.0
SCRAPE_WAIT_S = 60.0
REQUEST_TIMEOUT_S = 120.0
SAMPLERS = ("raw", "mh", "rep", "ddls", "drs", "sir")
MCMC_STEPS = 20  # chain length for mh / rep / ddls: enough proposals to compare counts, cheap on 2 CPU cores
N_CHAINS = 6
MAX_MODELS = 3
ROUNDS = 2

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None, poll_s: float = 0.2) -> T:
    """Poll ``check`` until it returns a value that is not None (or fail naming ``what``, with the log's tail)."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            result = check()
        except (httpx.HTTPError, OSError) as exc:
            last_error, result = exc, None
        if result is not None:
            return result
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error!r})\n{tail(log)}")


def tail(log: Path | None, lines: int = 60) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


# --- the processes ----------------------------------------------------------------------------------------------
class Server(NamedTuple):
    url: str
    port: int
    log: Path


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return require_binary("prometheus")  # before anything starts: a skip, or with CI=true a failure


@pytest.fixture(scope="module")
def server(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not any(MODELS_DIR.glob("*/*/model.toml")):
        pytest.fail(f"no demo models under {MODELS_DIR}")
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {**os.environ, "GANSAMPLER_HOST": "127.0.0.1", "GANSAMPLER_PORT": str(port),
           "GANSAMPLER_MODELS_DIR": str(MODELS_DIR), "GANSAMPLER_DATA_DIR": str(tmp / "data"),
           "GANSAMPLER_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    for key in ("GANSAMPLER_API_KEYS", "GANSAMPLER_ADMIN_TOKEN"):
        env.pop(key, None)
    exe = shutil.which("gansampler-server")
    cmd = [exe, "serve"] if exe else [sys.executable, "-m", "service.cli", "serve"]
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the server's /readyz", lambda: True if httpx.get(f"{url}/readyz").status_code == 200 else None,
                 SERVER_START_S, proc, log)
        yield Server(url, port, log)
    finally:
        stop(proc)


class Prometheus(NamedTuple):
    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=30)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}\n-> {r.status_code} {body}"
        return list(body["data"]["result"])


@pytest.fixture(scope="module")
def prometheus(server: Server, prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Prometheus]:
    binary = prometheus_binary
    tmp = tmp_path_factory.mktemp("prometheus")
    rules = yaml.safe_load(promql.RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = SCRAPE_INTERVAL  # same expressions, evaluated every second
    (tmp / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(tmp / "alerts.yml")],
        "scrape_configs": [{"job_name": "gansampler", "scrape_interval": SCRAPE_INTERVAL,
                            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus /-/ready", lambda: True if httpx.get(f"{url}/-/ready").status_code == 200 else None,
                 PROMETHEUS_START_S, proc, log)
        prom = Prometheus(url, log)
        wait_for("the first scrape of gansampler",
                 lambda: True if any(float(s["value"][1]) == 1 for s in prom.query('up{job="gansampler"}')) else None,
                 SCRAPE_WAIT_S, proc, log)
        yield prom
    finally:
        stop(proc)


# --- traffic ----------------------------------------------------------------------------------------------------
class Totals(NamedTuple):
    accepted: dict[tuple[str, str], int]
    proposals: dict[tuple[str, str], int]
    samples: dict[tuple[str, str], int]
    chain_acceptance: dict[tuple[str, str], list[float]]


def targets(client: httpx.Client) -> list[tuple[str, str]]:
    """(model id, sampler) for every sampler each ready model supports, over at most MAX_MODELS models."""
    models = client.get("/v1/models").raise_for_status().json()["models"]
    ready = sorted((m for m in models if m["state"] == "ready"), key=lambda m: m["id"])[:MAX_MODELS]
    assert ready, f"no ready model: {[(m['id'], m['state'], m.get('error')) for m in models]}"
    return [(m["id"], s) for m in ready for s in SAMPLERS if m["samplers"].get(s, {}).get("supported")]


def sample(client: httpx.Client, model: str, sampler: str, seed: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "n": N_CHAINS, "seed": seed, "output": "array", "diagnostics": "chains"}
    if sampler in ("mh", "rep", "ddls"):
        body["steps"] = MCMC_STEPS
    r = client.post(f"/v1/samples/{sampler}", json=body)
    assert r.status_code == 200, f"{sampler} on {model}: {r.status_code} {r.text[:500]}"
    return dict(r.json())


@pytest.fixture(scope="module")
def traffic(server: Server, prometheus: Prometheus) -> Totals:
    totals = Totals(defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(list))
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client, ThreadPoolExecutor(4) as pool:
        work = targets(client)
        assert any(s == "mh" for _, s in work), f"no model supports mh: {work}"
        for round_ in range(ROUNDS):
            futures = [pool.submit(sample, client, m, s, 1000 * round_ + i) for i, (m, s) in enumerate(work)]
            for (model, sampler), fut in zip(work, futures, strict=True):
                out = fut.result()
                key = (out["model"], sampler)
                assert out["model"] == model
                d = out["diagnostics"]
                totals.accepted[key] += int(d.get("accepted") or 0)
                totals.proposals[key] += int(d.get("proposals") or 0)
                totals.samples[key] += len(out["samples"])
                totals.chain_acceptance[key] += [c["acceptance_rate"] for c in d.get("chains") or []]
            # a few error statuses, so requests_total has more than one status
            assert client.post("/v1/samples/mh", json={"model": work[0][0], "n": 1, "bogus": 1}).status_code == 422
            assert client.post("/v1/samples/mh", json={"model": "no-such-model", "n": 1}).status_code == 404
            # wait until Prometheus has scraped this round's final counts (the next round then increases them)
            expected = sum(totals.samples.values())
            wait_for(f"a scrape with {expected} samples",
                     has_values(prometheus, "sum(gansampler_samples_total)", partial(eq, [float(expected)])),
                     SCRAPE_WAIT_S, log=server.log)
    # the recording rules have been evaluated over the final scrape: each recorded series has a finite value
    for rule in (r["record"] for r in promql.rules() if "record" in r):
        wait_for(f"recorded series {rule}", has_values(prometheus, rule, lambda v: any(map(math.isfinite, v))),
                 SCRAPE_WAIT_S, log=prometheus.log)
    return totals


def has_values(prom: Prometheus, expr: str, ok: Callable[[list[float]], bool]) -> Callable[[], bool | None]:
    """A check for :func:`wait_for`: True once ``expr`` returns data whose values satisfy ``ok``."""

    def check() -> bool | None:
        values = [float(s["value"][1]) for s in prom.query(expr)]
        return True if values and ok(values) else None

    return check


# --- the tests --------------------------------------------------------------------------------------------------
def test_metrics_endpoint_passes_promtool(server: Server) -> None:
    promtool = require_binary("promtool")
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "gansampler_model_ready" in r.text
    proc = subprocess.run([promtool, "check", "metrics"], input=r.content, capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def queries() -> list[promql.Query]:
    return [*promql.dashboard_queries(), *promql.variable_queries(), *promql.recording_queries(),
            *promql.alert_operands(),
            *(promql.Query(f"recorded series {r['record']}", r["record"]) for r in promql.rules() if "record" in r)]


@pytest.mark.parametrize("query", queries(), ids=lambda q: q.source)
def test_query_returns_data(query: promql.Query, prometheus: Prometheus, traffic: Totals) -> None:
    expr = promql.substitute(query.expr, QUERY_WINDOW)
    result = prometheus.query(expr)
    assert result, f"{query.source}: no data for\n{expr}"
    values = [float(s["value"][1]) for s in result]
    assert any(math.isfinite(v) for v in values), f"{query.source}: only non-finite values {values} for\n{expr}"


@pytest.mark.parametrize("rule", [r for r in promql.rules() if "alert" in r], ids=lambda r: r["alert"])
def test_alert_expression_evaluates(rule: dict[str, Any], prometheus: Prometheus, traffic: Totals) -> None:
    prometheus.query(rule["expr"])  # valid against the live server's series (data only while it fires)


def test_no_alert_fires_on_healthy_traffic(prometheus: Prometheus, traffic: Totals) -> None:
    firing = [s["metric"] for s in prometheus.query('ALERTS{alertstate="firing"}')]
    assert not firing, firing


def test_acceptance_matches_the_api_diagnostics(prometheus: Prometheus, traffic: Totals) -> None:
    def by_key(expr: str) -> dict[tuple[str, str], float]:
        return {(s["metric"]["model"], s["metric"]["sampler"]): float(s["value"][1]) for s in prometheus.query(expr)}

    accepted = by_key("sum by (model, sampler) (gansampler_mcmc_accepted_total)")
    proposals = by_key("sum by (model, sampler) (gansampler_mcmc_proposals_total)")
    ratio = by_key("sum by (model, sampler) (gansampler_mcmc_accepted_total)"
                   " / sum by (model, sampler) (gansampler_mcmc_proposals_total)")
    samples = by_key("sum by (model, sampler) (gansampler_samples_total)")
    checked = 0
    for key, n in traffic.samples.items():
        assert samples[key] == n, key
        assert proposals.get(key, 0.0) == traffic.proposals[key], key
        assert accepted.get(key, 0.0) == traffic.accepted[key], key
        if traffic.proposals[key] > 0:
            assert ratio[key] == pytest.approx(traffic.accepted[key] / traffic.proposals[key], rel=1e-12), key
            checked += 1
    assert checked, "no sampler made MH proposals"
    assert any(s == "mh" for _, s in traffic.samples)


def test_chain_acceptance_histogram_matches_the_api(prometheus: Prometheus, traffic: Totals) -> None:
    def by_key(expr: str) -> dict[tuple[str, str], float]:
        return {(s["metric"]["model"], s["metric"]["sampler"]): float(s["value"][1]) for s in prometheus.query(expr)}

    counts = by_key("sum by (model, sampler) (gansampler_chain_acceptance_ratio_count)")
    sums = by_key("sum by (model, sampler) (gansampler_chain_acceptance_ratio_sum)")
    checked = 0
    for key, rates in traffic.chain_acceptance.items():
        if not rates or traffic.proposals[key] == 0:
            continue  # raw runs no accept test: its per-chain "acceptance" is a convention, not a measurement
        checked += 1
        assert counts[key] == len(rates), (key, counts[key], rates)
        assert sums[key] == pytest.approx(sum(rates), rel=1e-4, abs=1e-6), (key, sums[key], rates)
    assert checked, "no sampler reported per-chain acceptance"
