"""Build ``deploy/grafana/dashboards/gansampler.json``, the provisioned gansampler dashboard.

Run ``python deploy/grafana/build_dashboard.py`` after editing and commit both files; a test checks that the JSON
is this script's output. Standard library only. The JSON targets current Grafana (schemaVersion 39: panel types
``timeseries``, ``heatmap``, ``stat``; a ``datasource`` variable; fixed uids), every query uses series that
``service.metrics.PrometheusSink`` exports, and the end-to-end test evaluates each query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DASHBOARD_UID = "gansampler-overview"
DATASOURCE_UID = "gansampler-prometheus"  # deploy/grafana/provisioning/datasources/prometheus.yml
OUTPUT = Path(__file__).resolve().parent / "dashboards" / "gansampler.json"
SCHEMA_VERSION = 39

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
SEL = 'model=~"$model", sampler=~"$sampler"'  # the model and sampler variables ("All" = ".*")
MH_SAMPLERS = "mh|rep"  # samplers whose accept ratio is a Metropolis-Hastings acceptance rate
API = 'route!~"/livez|/readyz|/metrics"'  # requests from API clients: probes and scrapes left out
JOB = 'job="gansampler"'  # process_* series are every exporter's: the scrape job of deploy/prometheus/prometheus.yml
WIDTH = 24

Json = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> Json:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": True, **extra}


def panel(kind: str, title: str, description: str, targets: list[Json], unit: str = "short",
          w: int = 12, h: int = 8, **field_defaults: Any) -> Json:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, **field_defaults}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
    }


def stat(title: str, description: str, expr: str, unit: str, legend: str = "", w: int = 6,
         thresholds: list[tuple[str, float | None]] | None = None) -> Json:
    steps = [{"color": c, "value": v} for c, v in (thresholds or [("green", None)])]
    p = panel("stat", title, description, [target(expr, legend)], unit=unit, w=w, h=4,
              thresholds={"mode": "absolute", "steps": steps})
    p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto",
                    "orientation": "auto"}
    return p


def heatmap(title: str, description: str, expr: str, unit: str) -> Json:
    """A heat map over a Prometheus histogram's buckets (already bucketed: no calculation in Grafana)."""
    p = panel("heatmap", title, description, [target(expr, "{{le}}", format="heatmap")], unit=unit)
    p["options"] = {
        "calculate": False,
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark", "scale": "exponential", "exponent": 0.5,
                  "steps": 64, "reverse": False},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "showValue": "never",
        "tooltip": {"mode": "single", "show": True, "yHistogram": True},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
    }
    return p


def quantiles(metric: str, by: str, selector: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[Json]:
    sel = "{" + selector + "}" if selector else ""
    group = f"le, {by}" if by else "le"
    suffix = " ".join("{{" + b.strip() + "}}" for b in by.split(",")) if by else ""
    return [target(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{sel}[{RI}])))",
                   f"p{round(q * 100)} {suffix}".strip()) for q in qs]


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": WIDTH, "h": 1}}


def ratio(num: str, den: str, by: str = "model, sampler", selector: str = SEL) -> str:
    return (f"sum by ({by}) (rate({num}{{{selector}}}[{RI}]))\n"
            f"/ sum by ({by}) (rate({den}{{{selector}}}[{RI}]))")


def panels() -> list[Json]:
    ms = "{{model}} {{sampler}}"
    acceptance = ratio("gansampler_mcmc_accepted_total", "gansampler_mcmc_proposals_total")
    return [
        row("Overview"),
        stat("Samples / s", "Samples returned per second by the selected models and samplers.",
             f"sum(rate(gansampler_samples_total{{{SEL}}}[{RI}]))", "ops"),
        stat("MH acceptance (mh, rep)", "Accepted / proposed moves of the Metropolis-Hastings samplers (mh, rep), "
             "one value per selected model and sampler (each model has its own usual level). The others are left "
             "out: drs and sir accept few candidates by design and ddls every step, so a rate pooled over samplers "
             "or models means nothing.",
             ratio("gansampler_mcmc_accepted_total", "gansampler_mcmc_proposals_total",
                   selector=f'{SEL}, sampler=~"{MH_SAMPLERS}"'),
             "percentunit", legend="{{model}} {{sampler}}",
             thresholds=[("red", None), ("orange", 0.05), ("green", 0.15)]),
        stat("Server errors (500)", "Share of API requests answered 500 (probes and scrapes not counted; 503s of "
             "unloaded, loading or draining models and 504s of a request's timeout_s are not server errors), as "
             "alert GansamplerHighErrorRate counts them.",
             f'(sum(rate(gansampler_requests_total{{status="500", {API}}}[{RI}])) or vector(0))'
             f"\n/ sum(rate(gansampler_requests_total{{{API}}}[{RI}]))", "percentunit",
             thresholds=[("green", None), ("orange", 0.01), ("red", 0.05)]),
        stat("Models ready", "Loaded model versions that serve requests, out of all known versions.",
             "sum(gansampler_model_ready)", "none", thresholds=[("red", None), ("green", 1)]),
        row("Sampling quality"),
        panel("timeseries", "MH acceptance rate by model and sampler",
              "rate(accepted) / rate(proposals). A sharp drop for one model means its discriminator drifted from "
              "its generator (alert GansamplerAcceptanceCollapse).",
              [target(acceptance, ms)], unit="percentunit", min=0, max=1),
        heatmap("Per-chain acceptance distribution",
                "Histogram of each finished chain's acceptance ratio (gansampler_chain_acceptance_ratio). Mass near "
                "0 means stuck chains; a bimodal map, some chains that never move. raw runs no accept test and "
                "is left out.",
                f'sum by (le) (increase(gansampler_chain_acceptance_ratio_bucket{{{SEL}, sampler!="raw"}}[{RI}]))',
                "percentunit"),
        panel("timeseries", "Discriminator logit: initial vs final (median)",
              "Median calibrated D logit of the chains' first and returned states. Final above initial: the "
              "sampler moves towards what D considers real. The gap shrinking is a sign of D/G drift.",
              [target("histogram_quantile(0.5, sum by (le, model, sampler, stage) "
                      f"(rate(gansampler_discriminator_logit_bucket{{{SEL}}}[{RI}])))", ms + " {{stage}}")],
              unit="none"),
        panel("timeseries", "Samples / s by model and sampler", "Samples returned (finished chains) per second.",
              [target(f"sum by (model, sampler) (rate(gansampler_samples_total{{{SEL}}}[{RI}]))", ms)],
              unit="ops"),
        panel("timeseries", "Chain steps / s", "Chain-steps run per second (rows x iterations).",
              [target(f"sum by (model, sampler) (rate(gansampler_chain_steps_total{{{SEL}}}[{RI}]))", ms)],
              unit="ops"),
        panel("timeseries", "Non-finite proposals / s",
              "Proposals rejected for a non-finite logit or gradient; should be 0.",
              [target(f"sum by (model, sampler) (rate(gansampler_nonfinite_total{{{SEL}}}[{RI}]))", ms)],
              unit="ops"),
        row("Serving"),
        panel("timeseries", "Requests / s by status", "HTTP requests answered per second, by status code.",
              [target(f"sum by (status) (rate(gansampler_requests_total[{RI}]))", "{{status}}")], unit="reqps"),
        panel("timeseries", "Request latency quantiles", "p50 / p95 / p99 of request duration by route.",
              quantiles("gansampler_request_duration_seconds", "route"), unit="s"),
        panel("timeseries", "Queue wait quantiles", "Time before a request's first chain step: p50 / p95 / p99.",
              quantiles("gansampler_queue_wait_seconds", ""), unit="s"),
        panel("timeseries", "Queue", "Chains waiting for admission, and chain-steps admitted but not yet run.",
              [target("sum(gansampler_queue_depth)", "waiting chains"),
               target("sum(gansampler_queued_chain_steps)", "queued chain-steps")], unit="short"),
        panel("timeseries", "Batch fill (chains per step)",
              "Mean and p95 rows stepped together per engine iteration of a pool: how well requests are batched.",
              [target(ratio("gansampler_batch_chains_sum", "gansampler_batch_chains_count"), "mean " + ms),
               *quantiles("gansampler_batch_chains", "model, sampler", SEL, (0.95,))], unit="short"),
        panel("timeseries", "Engine step duration", "p50 / p95 wall time of one engine iteration of a pool.",
              quantiles("gansampler_step_duration_seconds", "model, sampler", SEL, (0.5, 0.95)), unit="s"),
        panel("timeseries", "Active chains", "Chains in a pool being stepped.",
              [target("sum(gansampler_active_chains)", "active chains")], unit="short"),
        panel("timeseries", "Jobs by state", "Long-running jobs by state.",
              [target("sum by (state) (gansampler_jobs)", "{{state}}")], unit="short"),
        row("Models and devices"),
        panel("timeseries", "Device memory", "Memory per device and kind (model weights, allocated, reserved).",
              [target("sum by (device, kind) (gansampler_device_memory_bytes)", "{{device}} {{kind}}")],
              unit="bytes"),
        panel("timeseries", "Step budget (rows per step)",
              "Most proposal rows one pool step may evaluate on its device (gansampler_pool_max_rows): on CUDA the "
              "largest batch that fits the memory budget, measured when the model warms up (other options: at their "
              "first request); a drop means a step ran out of device memory and the limit was halved. Compare with "
              "batch fill.",
              [target(f"max by (model, sampler, device) (gansampler_pool_max_rows{{{SEL}}})",
                      "{{model}} {{sampler}} {{device}}")], unit="short", min=0),
        panel("timeseries", "Model ready", "1 when a model version is loaded and serving.",
              [target("max by (model) (gansampler_model_ready)", "{{model}}")], unit="none", min=0, max=1),
        panel("timeseries", "Model load and warm-up time", "Duration of each model version's latest load and warm-up.",
              [target("max by (model) (gansampler_model_load_seconds)", "load {{model}}"),
               target("max by (model) (gansampler_model_warmup_seconds)", "warm-up {{model}}")], unit="s"),
        row("Process"),
        panel("timeseries", "Server memory (RSS)",
              "Resident memory of each server process (weights, pools, results being encoded). A steady climb "
              "under steady traffic is a leak; a drop to the start level, a restart.",
              [target(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")], unit="bytes", min=0),
        panel("timeseries", "Server CPU and open files",
              "CPU seconds per second of each server process (the device workers' torch threads included), and "
              "its open file descriptors (connections, job result files).",
              [target(f"rate(process_cpu_seconds_total{{{JOB}}}[{RI}])", "cpu {{instance}}"),
               target(f"process_open_fds{{{JOB}}}", "fds {{instance}}", ref="B")], unit="short", min=0),
    ]


def layout(items: list[Json]) -> list[Json]:
    """Place panels left to right, wrapping at the grid width; rows take a full line."""
    x = y = line_h = 0
    for i, p in enumerate(items, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > WIDTH or p["type"] == "row":
            x, y, line_h = 0, y + line_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        p["id"] = i
        x, line_h = x + w, max(line_h, h)
        if p["type"] == "row":
            x, y, line_h = 0, y + h, 0
    return items


def variable(name: str, label: str) -> Json:
    query = f"label_values(gansampler_chain_steps_total, {name})"
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-values"}, "definition": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*", "sort": 1, "hide": 0,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "regex": ""}


def dashboard() -> Json:
    return {
        "uid": DASHBOARD_UID,
        "title": "gansampler",
        "description": "Post-hoc GAN sampling service: MH acceptance, sample throughput, latency, batching, devices.",
        "tags": ["gansampler"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {"selected": False, "text": "Prometheus", "value": DATASOURCE_UID},
             "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": ""},
            variable("model", "Model"),
            variable("sampler", "Sampler"),
        ]},
        "panels": layout(panels()),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
