"""The PromQL the deploy/ files contain: dashboard targets, template variables, rules, and alert operands.

Shared by the static tests (every series referenced is one the sink exports) and the end-to-end test (every
expression returns data from a real Prometheus scraping a real server).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gansampler.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULES_TEST = DEPLOY / "prometheus" / "alerts_test.yml"

# Grafana's built-in interval variables, replaced by a window that spans a whole test run so that every rate()
# sees at least two scrapes of traffic.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")
# the service's series and the server process's (prometheus_client's process and platform collectors)
SERIES_NAME = re.compile(r"(?<![\w:])((?:gansampler|process|python)_[A-Za-z0-9_]+)")
RECORDED_NAME = re.compile(r"(?<![\w:\"])([a-z_]+:[A-Za-z0-9_:]+)")
_OPERATOR = re.compile(r"==|!=|<=|>=|<|>|(?<![\w:])(?:and|or|unless)(?![\w:])")
_MODIFIERS = re.compile(r"^(?:bool\s*|(?:on|ignoring|group_left|group_right)\s*\([^)]*\)\s*)*")


class Query(NamedTuple):
    source: str  # where it came from, for messages: "dashboard panel 7 'title' A", "rule record:...", ...
    expr: str


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def load_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[Query]:
    """Every panel target's expression (with its template variables still in it)."""
    d = dashboard if dashboard is not None else load_dashboard()
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append(Query(f"dashboard panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]))
    return out


def variable_queries(dashboard: dict[str, Any] | None = None) -> list[Query]:
    """``label_values(metric, label)`` template variables, as the series selector they read."""
    d = dashboard if dashboard is not None else load_dashboard()
    out = []
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
        assert m is not None, f"variable {v['name']}: unsupported query {q!r}"
        out.append(Query(f"dashboard variable {v['name']}", m.group(1)))
    return out


def rules() -> list[dict[str, Any]]:
    return [r for g in load_rules()["groups"] for r in g["rules"]]


def rule_queries() -> list[Query]:
    return [Query(f"rule {r.get('record') or r['alert']}", r["expr"]) for r in rules()]


def recording_queries() -> list[Query]:
    return [Query(f"rule {r['record']}", r["expr"]) for r in rules() if "record" in r]


def alert_operands() -> list[Query]:
    """The inner operands of each alert condition (both sides of comparisons and of and/or/unless), those that
    read series: each of them must return data even while the alert does not fire."""
    out = []
    for r in rules():
        if "alert" not in r:
            continue
        for part in _operands(r["expr"]):
            if SERIES_NAME.search(part) or RECORDED_NAME.search(part) or re.match(r"up\b", part):
                out.append(Query(f"alert {r['alert']} operand", part))
    return out


def _operands(expr: str) -> list[str]:
    """The top-level operands of ``expr``, a parenthesised group split in turn. ``absent(...)`` is left out: it
    returns data exactly when its series are missing, so it is empty while the alert does not fire."""
    out = []
    for part in split_top_level(expr):
        part = _MODIFIERS.sub("", part.strip())
        if _wrapped(part) and len(split_top_level(part[1:-1])) > 1:
            out.extend(_operands(part[1:-1]))
        elif not part.startswith("absent("):
            out.append(part)
    return out


def _wrapped(part: str) -> bool:
    """Whether ``part`` is one parenthesised group: "(a and b)", not "(a) and (b)"."""
    depth = 0
    for i, c in enumerate(part):
        depth += (c == "(") - (c == ")")
        if depth == 0 and i < len(part) - 1:
            return False
    return part.startswith("(") and depth == 0


def split_top_level(expr: str) -> list[str]:
    """Split ``expr`` at comparison and set operators outside any (), {} or [] and outside strings."""
    parts, depth, start, i, quote = [], 0, 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif depth == 0 and (m := _OPERATOR.match(expr, i)) is not None:
            parts.append(expr[start:i])
            start = i = m.end()
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def substitute(expr: str, window: str, variables: dict[str, str] | None = None) -> str:
    """Replace Grafana's interval variables by ``window`` and ``$name`` / ``${name}`` template variables by
    their values (default: ``.*``, what "All" means for a regex matcher)."""
    for name in GRAFANA_INTERVALS:
        expr = expr.replace(name, window)
    values = variables or {}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ".*"), expr)


def series_names(expr: str) -> set[str]:
    return set(SERIES_NAME.findall(expr))


def recorded_names(expr: str) -> set[str]:
    return set(RECORDED_NAME.findall(expr))
