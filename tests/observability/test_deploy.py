"""deploy/, Dockerfile and docker-compose.yml: valid for their tools, consistent with each other and with the sink."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from packaging.version import Version
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import PrometheusSink

from . import promql
from .tools import feed, require_binary

ROOT = promql.ROOT
GRAFANA = ROOT / "deploy" / "grafana"
PANEL_TYPES = {"row", "timeseries", "heatmap", "stat"}
MIN_SCHEMA_VERSION = 39


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def exported_names() -> set[str]:
    """Every sample name the sink renders once each of its methods has been called (``_total``, ``_bucket`` ...)."""
    sink = PrometheusSink()
    feed(sink)
    body, _ = sink.render()
    return {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}


# --- Prometheus -------------------------------------------------------------------------------------------------
def test_promtool_check_config_and_rules() -> None:
    promtool = require_binary("promtool")
    proc = run([promtool, "check", "config", str(promql.PROMETHEUS_CONFIG)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run([promtool, "check", "rules", str(promql.RULES)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rule_unit_tests() -> None:
    promtool = require_binary("promtool")
    proc = run([promtool, "test", "rules", promql.RULES_TEST.name], cwd=promql.RULES_TEST.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The collapse alert's unit test fails when the rule's threshold is loosened (the tests have teeth)."""
    promtool = require_binary("promtool")
    broken = promql.RULES.read_text().replace("< 0.5 * model_sampler", "< 0.1 * model_sampler")
    assert broken != promql.RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts_test.yml").write_text(promql.RULES_TEST.read_text())
    proc = run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "GansamplerAcceptanceCollapse" in proc.stdout + proc.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(promql.RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert fired == {r["alert"] for r in promql.rules() if "alert" in r}


def test_scrape_config_targets_the_service() -> None:
    config = yaml.safe_load(promql.PROMETHEUS_CONFIG.read_text())
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert jobs["gansampler"].get("metrics_path", "/metrics") == "/metrics"
    assert jobs["gansampler"]["static_configs"][0]["targets"] == ["gansampler:8000"]  # the compose service
    assert config["rule_files"] == ["alerts.yml"]


def test_alerts_cover_the_failure_modes() -> None:
    alerts = {r["alert"]: r for r in promql.rules() if "alert" in r}
    for name in ("GansamplerAcceptanceCollapse", "GansamplerAcceptanceNearZero", "GansamplerQueueSaturated",
                 "GansamplerHighErrorRate", "GansamplerModelNotReady"):
        assert name in alerts, name
    for name, rule in alerts.items():
        assert rule.get("for"), f"{name} has no 'for' duration"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


# --- every series referenced is one the sink exports -------------------------------------------------------------
def test_referenced_series_are_exported() -> None:
    exported = exported_names()
    queries = [*promql.dashboard_queries(), *promql.variable_queries(), *promql.rule_queries()]
    assert len(queries) > 20
    missing = [(q.source, name) for q in queries for name in promql.series_names(q.expr) if name not in exported]
    assert not missing, missing


def test_referenced_recording_rules_are_defined() -> None:
    recorded = {r["record"] for r in promql.rules() if "record" in r}
    queries = [*promql.dashboard_queries(), *promql.rule_queries()]
    missing = [(q.source, n) for q in queries for n in promql.recorded_names(q.expr) if n not in recorded]
    assert not missing, missing


def test_name_check_can_fail() -> None:
    assert promql.series_names('rate(gansampler_mcmc_acceptd_total[5m]) / x') == {"gansampler_mcmc_acceptd_total"}
    assert "gansampler_mcmc_acceptd_total" not in exported_names()


def test_every_alert_has_operands_that_read_series() -> None:
    alerts = {r["alert"] for r in promql.rules() if "alert" in r}
    covered = {q.source.split()[1] for q in promql.alert_operands()}
    assert covered == alerts


# --- Grafana ----------------------------------------------------------------------------------------------------
def test_dashboard_json_is_the_generator_output() -> None:
    proc = run([sys.executable, str(GRAFANA / "build_dashboard.py"), "--check"])
    assert proc.returncode == 0, proc.stderr


def test_dashboard_structure() -> None:
    d = promql.load_dashboard()
    assert d["uid"] == "gansampler-overview"
    assert d["schemaVersion"] >= MIN_SCHEMA_VERSION
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        assert p["type"] in PANEL_TYPES, p["type"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not (area & cells), f"panel {p['id']} overlaps another"
        cells |= area
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            assert t["expr"].strip()
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for topic in ("acceptance rate", "acceptance distribution", "samples / s", "requests / s", "latency",
                  "queue wait", "batch fill", "active chains", "device memory", "logit"):
        assert topic in titles, topic
    assert {p["type"] for p in d["panels"]} == PANEL_TYPES


# series labelled by model and sampler: every panel on them follows the dashboard's $model and $sampler variables
PER_MODEL_SAMPLER = ("gansampler_samples_total", "gansampler_mcmc_", "gansampler_chain_", "gansampler_nonfinite_",
                     "gansampler_discriminator_logit", "gansampler_pool_max_rows")


def test_panels_on_model_and_sampler_series_follow_the_variables() -> None:
    for q in promql.dashboard_queries():
        if any(name in q.expr for name in PER_MODEL_SAMPLER):
            assert "$model" in q.expr and "$sampler" in q.expr, q.source


def test_the_acceptance_stat_is_per_mh_sampler_and_model() -> None:
    """An acceptance rate pooled over samplers means nothing (ddls accepts every step, drs and sir few by design),
    nor one pooled over models (each has its own level): one value per (model, sampler) of mh and rep."""
    stats = [p for p in promql.load_dashboard()["panels"] if p["type"] == "stat" and "acceptance" in p["title"].lower()]
    assert len(stats) == 1
    (t,) = stats[0]["targets"]
    expr = t["expr"]
    assert expr.count('sampler=~"mh|rep"') == 2 and expr.count("sum by (model, sampler)") == 2, expr
    assert expr.count("$model") == 2 and expr.count("$sampler") == 2, expr
    assert "{{model}}" in t["legendFormat"] and "{{sampler}}" in t["legendFormat"]


def test_the_error_panels_and_alert_leave_probes_and_client_statuses_out() -> None:
    rules = {r.get("alert") or r.get("record"): r["expr"] for g in promql.load_rules()["groups"] for r in g["rules"]}
    assert "gansampler:requests_500" in rules["GansamplerHighErrorRate"]
    exprs = [rules["gansampler:requests_500:ratio_rate5m"],
             *[q.expr for q in promql.dashboard_queries() if "Server errors" in q.source]]
    assert len(exprs) == 2
    for expr in exprs:
        assert 'status="500"' in expr and "5.." not in expr, expr
        assert expr.count('route!~"/livez|/readyz|/metrics"') == 2, expr


def test_provisioning_matches_the_dashboard_and_compose() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    d = promql.load_dashboard()
    default = next(v for v in d["templating"]["list"] if v["name"] == "datasource")["current"]["value"]
    assert source["uid"] == default and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gansampler.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"] if v.startswith("./"))
    assert Path(mounts[path]) == Path("./deploy/grafana/dashboards")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{promql.DASHBOARD.name}"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


# --- Docker -----------------------------------------------------------------------------------------------------
def test_docker_compose_config_is_valid() -> None:
    compose = require_binary("docker-compose")
    proc = run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_reserves_a_gpu_and_mounts_models_read_only() -> None:
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["gansampler"]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "./models:/models:ro" in service["volumes"]
    prometheus = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\w.-]+-runtime-", text, re.M)
    assert re.search(r'pip install "torch==\$\{TORCH_VERSION\}" --index-url "\$\{TORCH_INDEX\}"', text)
    # dependencies first, pinned, in their own layer; then the code, installed without touching them
    deps = text.index("pip install -c deploy/constraints.txt -r /tmp/requirements.txt")
    assert deps < text.index("COPY service ./service") < text.index('pip install --no-deps ".[gpu]"')
    # the dependency layer's cache key: only what names the dependencies (an edited README must not reinstall them)
    before = [src for line in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", text[:deps], re.M)
              for src in line.split()]
    assert sorted(before) == ["deploy/constraints.txt", "pyproject.toml"], before
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", text, re.M)
    assert text.rstrip().splitlines()[-1] == 'CMD ["gansampler-server", "serve"]'
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert any(e.startswith("onnxruntime-gpu") for e in extras)
    assert not any(re.match(r"onnxruntime\b(?!-gpu)", e) for e in extras)


def test_constraints_pin_every_dependency_of_the_image() -> None:
    """Every runtime dependency and gpu-extra package of pyproject.toml has one exact version in the constraints the
    image installs with; and the file is what deploy/lock.py writes (it names no package twice)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = [ln for ln in (ROOT / "deploy" / "constraints.txt").read_text().splitlines() if ln and ln[0] != "#"]
    pins = dict(ln.split("==") for ln in lines)
    assert len(pins) == len(lines) and all(re.fullmatch(r"[\w.]+", v) for v in pins.values()), lines
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {canonicalize_name(Requirement(r).name) for r in
              [*project["dependencies"], *project["optional-dependencies"]["gpu"]]}
    assert wanted <= set(pins), sorted(wanted - set(pins))
    assert not {"onnxruntime", "pytest", "schemathesis"} & set(pins)  # the image's packages only
    torch_arg = re.search(r"^ARG TORCH_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert torch_arg and torch_arg.group(1) == pins["torch"]


def dockerfile_env_and_cmd() -> tuple[dict[str, str], list[str]]:
    """The final stage's GANSAMPLER_* variables (ENV) and its CMD."""
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):].replace("\\\n", " ")
    env = dict(re.findall(r"\b(GANSAMPLER_\w+)=(\S+)", "\n".join(re.findall(r"^ENV (.+)$", final, re.M))))
    cmd = re.search(r"^CMD (\[.+\])$", final, re.M)
    assert cmd is not None
    return env, json.loads(cmd.group(1))


@pytest.mark.parametrize("override", [None, "10.1.2.3"])
def test_image_settings_come_from_the_environment(override: str | None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The image listens on all interfaces by its ENV, not by a CMD flag, so GANSAMPLER_HOST (docker run -e,
    compose) still chooses the address: a flag would win over the variable."""
    from service.api.serve import settings_from_args
    from service.cli import build_parser

    env, cmd = dockerfile_env_and_cmd()
    assert cmd[:2] == ["gansampler-server", "serve"]
    env |= {"GANSAMPLER_MODELS_DIR": str(tmp_path), "GANSAMPLER_DATA_DIR": str(tmp_path / "data"),
            "GANSAMPLER_DEVICE": "cpu"}  # paths and a device this machine has
    if override is not None:
        env["GANSAMPLER_HOST"] = override
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_from_args(build_parser().parse_args(cmd[1:]))
    assert settings.host == (override or "0.0.0.0")
    assert settings.port == int(env["GANSAMPLER_PORT"])


def load_lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_lock", ROOT / "deploy" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lock_targets_the_image_python() -> None:
    """deploy/lock.py evaluates dependency markers for the image's Python: a new base image must update it."""
    lock = load_lock()
    image = re.search(r"^ARG CUDA_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert image and image.group(1).endswith(f"-{lock.IMAGE_OS}"), (image, lock.IMAGE_OS)
    assert lock.TARGET["python_version"] == lock.IMAGE_PYTHON


def test_lock_pins_a_stand_in_to_a_released_version() -> None:
    """onnxruntime-gpu is released apart from onnxruntime: its pin is the newest release not after the CPU one's
    (a pin copied from onnxruntime may not exist, and the image build would fail)."""
    lock = load_lock()
    released = ["1.30.0", "1.31.0rc1", "1.29.0", "1.31.1", "1.33.0", "bogus"]
    assert lock.newest_not_after("onnxruntime-gpu", "1.32.0", released) == "1.31.1"
    assert lock.newest_not_after("onnxruntime-gpu", "1.31.1", released) == "1.31.1"
    with pytest.raises(SystemExit, match=r"onnxruntime-gpu: no released version <= 1\.0"):
        lock.newest_not_after("onnxruntime-gpu", "1.0", released)
    pins = lock.current_pins()
    try:
        cpu = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        pytest.skip("onnxruntime not installed")
    assert Version(pins["onnxruntime-gpu"]) <= Version(cpu)


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    assert next(ln for ln in lines if ln and not ln.startswith("#")) == "**"  # deny all, then allow
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "deploy/constraints.txt", "service", "models"}
    copied = re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for src in sources.split():
            assert src.rstrip("/") in allowed, f"Dockerfile copies {src}, which .dockerignore leaves out"


def test_readme_lists_every_series() -> None:
    path = "deploy/README.md"
    text = (ROOT / path).read_text()
    families = {n.removesuffix("_total") for n in exported_names()
                if not n.endswith(("_bucket", "_sum", "_count", "_created")) and n.startswith("gansampler_")}
    for name in sorted(families | {n.removesuffix("_bucket") for n in exported_names() if n.endswith("_bucket")}):
        assert re.search(rf"`{name}(_total)?", text), f"{path} does not list {name}"


def test_compose_gives_the_server_its_whole_shutdown_grace() -> None:
    """docker stops a container with SIGKILL after stop_grace_period (10 s by default): it must outlast the server's
    shutdown_grace_s, or running requests are cut off instead of answered."""
    from service.config import Settings

    server = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["gansampler"]
    period = server["stop_grace_period"]
    assert period.endswith("s")
    grace = float(server["environment"].get("GANSAMPLER_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    assert float(period[:-1]) >= grace + 5
