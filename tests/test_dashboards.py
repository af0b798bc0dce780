"""The Grafana dashboards in dashboards/.

Static checks: valid JSON that follows the project's dashboard conventions (checked here, in code);
every PromQL expression parses with the real Prometheus parser (promtool); every dashboard
type-checks against Grafana's own schema (npm @grafana/schema, checked with tsc); every metric a
dashboard or rule names is one the exporter's code declares.

Live check: the exporter in demo mode (built-in Letta simulator) scraped by a real
Prometheus server that also loads rules/ and the default SLO rules (rules/slo/); every panel query,
with its variables substituted (the SLO row's once per default objective), must return data
through Prometheus' HTTP API, and every metric a dashboard or rule names must be in a live scrape
of /metrics.

The checks in code run in the fast tier. The ones that drive a tool are the integration tier
(marker ``integration``): promtool and prometheus from Debian's ``prometheus`` package
(.ci/install-prometheus.sh); @grafana/schema and typescript in tests/dashboards_support
(.ci/install-grafana-schema.sh). A missing tool fails the test, naming its install script.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.rules.alerts import ALERTS
from tests.support import free_port, require_tool

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
# The project's rules and the default SLO rules: what the Helm chart loads, and the SLO row reads.
RULE_FILES = [ROOT / "rules" / "letta-exporter.rules.yml", ROOT / "rules" / "slo" / "default.rules.yml"]
SLO_NAMES = [
    o["name"] for o in yaml.safe_load((ROOT / "rules" / "slo" / "default.yaml").read_text())["objectives"]
]
SUPPORT = ROOT / "tests" / "dashboards_support"
NODE_MODULES = SUPPORT / "node_modules"
SCHEMA_TYPES = NODE_MODULES / "@grafana" / "schema" / "dist" / "types"
TSC = NODE_MODULES / ".bin" / "tsc"

EXPECTED = {
    "letta-runs-overview.json": "letta-runs-overview",
    "letta-agent-detail.json": "letta-agent-detail",
    "letta-exporter-health.json": "letta-exporter-health",
}
TAGS = ["letta", "letta-exporter"]
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTIN_VARS = {"__rate_interval", "__range", "__interval", "__interval_ms", "__range_s"}

# Metrics Prometheus itself adds to every target (not the exporter's).
PROMETHEUS_SYNTHETIC = {"up"}
# Metrics the dashboards show ahead of the change that adds them to the exporter (none now).
EXPECTED_LATER: dict[str, str] = {}
PROMETHEUS_INSTALLER = ".ci/install-prometheus.sh"


# ---------------------------------------------------------------------------------------------------
# Reading dashboards


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / name).read_text())


def all_dashboards() -> dict[str, dict[str, Any]]:
    return {name: load(name) for name in EXPECTED}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def visual_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in panels(dashboard) if p["type"] != "row"]


@dataclass(frozen=True)
class Query:
    uid: str
    panel: str
    ref: str
    expr: str
    instant: bool


def queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        Query(dashboard["uid"], p["title"], t["refId"], t["expr"], bool(t.get("instant")))
        for p in visual_panels(dashboard)
        for t in p.get("targets", [])
    ]


def variable(dashboard: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((v for v in dashboard["templating"]["list"] if v["name"] == name), None)


VAR_REF = re.compile(r"\$(?:\{(\w+)(?::[\w]+)?\}|(\w+))")


def variables_in(text: str) -> set[str]:
    return {a or b for a, b in VAR_REF.findall(text) if not (a or b).isdigit()}


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.isdigit():  # "$1" in label_replace's replacement string
            return match.group(0)
        return values[name]

    return VAR_REF.sub(repl, expr)


STATIC_VALUES = {
    "__rate_interval": "5m",
    "__range": "1h",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range_s": "3600",
    "job": "letta-exporter",
    "instance": "127.0.0.1:9464",
    "agent": "agent-00000000-0000-4000-8000-000000000000",
    "slo": "run-success",
}


def variable_selector(query: str) -> str:
    """The series selector inside ``label_values(selector, label)``."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert match, f"not a label_values(selector, label) query: {query}"
    return match.group(1)


# ---------------------------------------------------------------------------------------------------
# Metric names in PromQL. Whether PromQL is *valid* is promtool's job (test_promql_parses); this only
# lists the metric names an expression that parses refers to.

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "offset", "inf", "nan", "atan2",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![\w:.])\d[\w.]*(?:[eE][+-]?\d+)?", " ", text)  # numbers, durations
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if word.lower() in PROMQL_KEYWORDS or re.match(r"\s*\(", text[match.end() :]):
            continue  # keyword or function call
        names.add(word)
    return names


def dashboard_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is used."""
    used: dict[str, set[str]] = {}
    for dashboard in all_dashboards().values():
        for q in queries(dashboard):
            for name in metric_names(q.expr):
                used.setdefault(name, set()).add(f"{q.uid}: {q.panel} {q.ref}")
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                for name in metric_names(variable_selector(var["query"])):
                    used.setdefault(name, set()).add(f"{dashboard['uid']}: variable {var['name']}")
    return used


def rule_exprs() -> list[tuple[str, str]]:
    """(rule name, expr) of the rules files."""
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((rule.get("record") or rule["alert"], rule["expr"]))
    return out


# ---------------------------------------------------------------------------------------------------
# Conventions


def test_generator_and_committed_json_agree() -> None:
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARD_DIR / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, build in module.DASHBOARDS.items():
        assert (DASHBOARD_DIR / name).read_text() == module.render(build), (
            f"dashboards/{name} differs from dashboards/generate.py: run python dashboards/generate.py"
        )


def test_dashboard_files_are_plain_json_with_stable_uids_tags_time_and_refresh() -> None:
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(EXPECTED)
    for name, uid in EXPECTED.items():
        dashboard = json.loads((DASHBOARD_DIR / name).read_text())  # valid JSON
        assert "__inputs" not in dashboard and "__requires" not in dashboard, name
        assert dashboard["uid"] == uid
        assert dashboard["tags"] == TAGS
        assert dashboard["time"] == {"from": "now-6h", "to": "now"}
        assert dashboard["refresh"] == "30s"
        assert 36 <= dashboard["schemaVersion"] <= 41
        assert dashboard.get("id") is None, "a fixed numeric id breaks import into another Grafana"
        assert dashboard["title"].startswith("Letta / ")
        assert dashboard.get("description")


def test_datasource_is_a_variable_and_never_a_hard_coded_uid() -> None:
    for name, dashboard in all_dashboards().items():
        ds = variable(dashboard, "datasource")
        assert ds is not None, f"{name}: no datasource variable"
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"

        def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "datasource":
                        yield f"{path}.{key}", value
                    yield from walk(value, f"{path}.{key}")
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    yield from walk(value, f"{path}[{i}]")

        for path, ref in walk(dashboard, name):
            if isinstance(ref, dict) and ref.get("type") == "grafana":
                continue  # Grafana's built-in annotations
            assert ref == DS_REF, f"{path}: datasource {ref!r} is not {DS_REF}"
        for panel in visual_panels(dashboard):
            assert panel.get("datasource") == DS_REF, f"{name}: {panel['title']}"
            for t in panel["targets"]:
                assert t.get("datasource") == DS_REF, f"{name}: {panel['title']} {t['refId']}"


def test_job_instance_and_agent_variables_use_label_values() -> None:
    for name, dashboard in all_dashboards().items():
        wanted = ["job", "instance"] + (["agent"] if name != "letta-exporter-health.json" else [])
        for var_name in wanted:
            var = variable(dashboard, var_name)
            assert var is not None, f"{name}: no {var_name} variable"
            assert var["type"] == "query"
            assert var["datasource"] == DS_REF
            assert var["query"].startswith("label_values("), var["query"]
            label = "agent_id" if var_name == "agent" else var_name
            assert re.search(rf",\s*{label}\)$", var["query"]), var["query"]
            assert var["refresh"] in (1, 2)
        # The instance list follows the chosen jobs; the agent list follows both.
        assert "$job" in variable(dashboard, "instance")["query"]
        if "agent" in wanted:
            assert {"job", "instance"} <= variables_in(variable(dashboard, "agent")["query"])
    detail_agent = variable(load("letta-agent-detail.json"), "agent")
    assert detail_agent["multi"] is False and detail_agent["includeAll"] is False


def test_every_variable_a_query_uses_is_defined() -> None:
    for name, dashboard in all_dashboards().items():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTIN_VARS
        for q in queries(dashboard):
            missing = variables_in(q.expr) - defined
            assert not missing, f"{name}: {q.panel} {q.ref} uses undefined {missing}"


def test_every_range_selector_is_rate_interval() -> None:
    """Every rate/irate/increase (and any other range) uses $__rate_interval, never a fixed window;
    only a total over the dashboard's time range (the spend in it) is increase(...[$__range])."""
    seen_rate = 0
    for name, dashboard in all_dashboards().items():
        for q in queries(dashboard):
            for match in re.finditer(r"\b(rate|irate|increase)\s*\(", q.expr):
                seen_rate += 1
                depth, i = 1, match.end()
                while depth:
                    depth += {"(": 1, ")": -1}.get(q.expr[i], 0)
                    i += 1
                argument = q.expr[match.end() : i - 1].rstrip()
                whole_range = match.group(1) == "increase" and argument.endswith("[$__range]")
                assert argument.endswith("[$__rate_interval]") or whole_range, (
                    f"{name}: {q.panel} {q.ref}: {match.group(1)}({argument}) does not use $__rate_interval"
                )
            for window in re.findall(r"\[([^\]]*)\]", q.expr):
                assert window in ("$__rate_interval", "$__range"), (
                    f"{name}: {q.panel} {q.ref}: range [{window}]"
                )
    assert seen_rate > 50


def test_every_panel_has_a_unit_and_a_description() -> None:
    for name, dashboard in all_dashboards().items():
        for panel in visual_panels(dashboard):
            where = f"{name}: {panel.get('title')}"
            assert panel.get("title"), where
            assert len(panel.get("description", "")) >= 30, f"{where}: no useful description"
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert isinstance(unit, str) and unit, f"{where}: no unit"
            assert panel.get("targets"), f"{where}: no query"


def test_panel_ids_are_unique_and_the_grid_has_no_overlaps() -> None:
    for name, dashboard in all_dashboards().items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), name
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{name}: {panel['title']}"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def _metrics_of(dashboard: dict[str, Any]) -> set[str]:
    return {m for q in queries(dashboard) for m in metric_names(q.expr)}


def test_overview_has_the_panels_the_issue_asks_for() -> None:
    overview = load("letta-runs-overview.json")
    metrics = _metrics_of(overview)
    for metric in (
        "letta_runs_total",
        "letta_run_ttft_seconds_bucket",
        "letta_run_duration_seconds_bucket",
        "letta_run_steps_bucket",
        "letta_run_tokens_total",
        "letta_step_tokens_total",
        "letta_run_tool_calls_total",
        "letta_active_runs",
        "letta_active_run_max_age_seconds",
        "letta_agent_info",
    ):
        assert metric in metrics, metric
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in visual_panels(overview)}
    assert 'status="failed"' in exprs["Failure ratio"]
    assert "by (stop_reason)" in exprs["Failures / s by stop reason"]
    assert all(
        f"histogram_quantile({q}," in exprs["Time to first token p50 / p90 / p99"] for q in (0.5, 0.9, 0.99)
    )
    assert "cached|cache_read" in exprs["Cached-token share of prompt tokens"]
    assert "topk(" in exprs["Top tools"]
    heatmaps = [p for p in visual_panels(overview) if p["type"] == "heatmap"]
    assert heatmaps and heatmaps[0]["targets"][0]["format"] == "heatmap"
    assert "letta_run_ttft_seconds_bucket" in heatmaps[0]["targets"][0]["expr"]


def test_agent_names_come_from_letta_agent_info_and_the_table_links_to_agent_detail() -> None:
    overview = load("letta-runs-overview.json")
    tables = [p for p in visual_panels(overview) if p["type"] == "table"]
    assert len(tables) == 1
    table = tables[0]
    for t in table["targets"]:
        assert "* on(agent_id) group_left(agent_name)" in t["expr"] and "letta_agent_info" in t["expr"]
        assert t["instant"] is True and t["format"] == "table"
    links = [
        link
        for override in table["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert links, "the agents table has no data link"
    for link in links:
        url = link["url"]
        assert url.startswith("/d/letta-agent-detail/"), url
        assert "var-agent=${__data.fields.agent_id}" in url
        assert "${datasource:queryparam}" in url and "${__url_time_range}" in url
    # The agent-detail dashboard filters everything agent-labelled by $agent.
    detail = load("letta-agent-detail.json")
    for q in queries(detail):
        if {"letta_runs_total", "letta_run_ttft_seconds_bucket", "letta_run_tokens_total"} & metric_names(
            q.expr
        ):
            assert 'agent_id=~"$agent"' in q.expr, f"{q.panel} {q.ref}"


def test_exporter_health_has_the_panels_the_issue_asks_for() -> None:
    health = load("letta-exporter-health.json")
    metrics = _metrics_of(health)
    for metric in (
        "letta_exporter_up",
        "letta_exporter_last_successful_poll_timestamp_seconds",
        "letta_exporter_poll_duration_seconds_bucket",
        "letta_exporter_api_requests_total",
        "letta_exporter_tracked_runs",
        "letta_exporter_spans_exported_total",
    ):
        assert metric in metrics, metric
    exprs = " ".join(q.expr for q in queries(health))
    assert 'code="429"' in exprs
    assert "by (endpoint, code)" in exprs


# ---------------------------------------------------------------------------------------------------
# Token types that overlap (cached is part of prompt, cached and cache_read are the same tokens, ...)
# are never added up.

TOKEN_SELECTOR = re.compile(r"(?<![\w:])[A-Za-z_:][\w:]*tokens[\w:]*(?:\s*\{[^}]*\})?")
AGGREGATION = re.compile(
    r"\b(sum|avg|count|max|min|group|stddev|stdvar|quantile|topk|bottomk|count_values)\s*"
    r"(?:(by|without)\s*\(([^)]*)\)\s*)?$"
)
TRAILING_GROUPING = re.compile(r"^\s*(by|without)\s*\(([^)]*)\)")
ADDITIVE = {"sum", "avg", "count"}  # these add (or average) the series they merge
KEEPS_LABELS = {"topk", "bottomk"}


def _blank_strings(expr: str) -> str:
    """The expression with string contents blanked (same length), so parentheses in them do not count."""
    return re.sub(r'"(?:\\.|[^"\\])*"', lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', expr)


def _token_types_selected(selector: str) -> set[str]:
    from exporter.figures import TOKEN_TYPES

    allowed = set(TOKEN_TYPES)
    for op, value in re.findall(r'\btype\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
        matches = {
            "=": lambda t, v=value: t == v,
            "!=": lambda t, v=value: t != v,
            "=~": lambda t, v=value: re.fullmatch(v, t) is not None,
            "!~": lambda t, v=value: re.fullmatch(v, t) is None,
        }[op]
        allowed = {t for t in allowed if matches(t)}
    return allowed


def _enclosing_aggregations(blank: str, pos: int) -> Iterator[tuple[str, bool]]:
    """From the innermost out, the aggregations around ``pos``: (operator, whether it merges series
    that differ only in ``type``)."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        if blank[i] == ")":
            depth += 1
        elif blank[i] == "(" and depth:
            depth -= 1
        elif blank[i] == "(":
            call = AGGREGATION.search(blank[:i])
            if not call or call.group(1) in KEEPS_LABELS:
                continue
            mode, labels = call.group(2), call.group(3)
            if mode is None:  # sum(...) by (labels): the grouping after the closing parenthesis
                level = 0
                for close in range(i, len(blank)):
                    level += {"(": 1, ")": -1}.get(blank[close], 0)
                    if level == 0:
                        break
                trailing = TRAILING_GROUPING.match(blank[close + 1 :])
                if trailing:
                    mode, labels = trailing.group(1), trailing.group(2)
            listed = "type" in re.split(r"[\s,]+", labels or "")
            yield call.group(1), mode is None or (mode == "by") != listed


def overlapping_token_sums(expr: str) -> list[str]:
    """Token selectors in ``expr`` that an additive aggregation merges across overlapping types."""
    from exporter.figures import OVERLAPPING_TOKEN_TYPES

    blank = _blank_strings(expr)
    found = []
    for selector in TOKEN_SELECTOR.finditer(blank):
        text = expr[selector.start() : selector.end()]
        for operator, merges_types in _enclosing_aggregations(blank, selector.start()):
            if not merges_types:
                continue
            types = _token_types_selected(text)
            if operator in ADDITIVE and any(pair <= types for pair in OVERLAPPING_TOKEN_TYPES):
                found.append(f"{operator} over types {sorted(types)}: {text}")
            break  # past the first aggregation that merges types, there is no type left to sum
    return found


def test_overlap_check_catches_sums_over_overlapping_token_types() -> None:
    bad = [
        "sum(rate(letta_run_tokens_total[5m]))",
        'sum by (agent_id) (rate(letta_run_tokens_total{job="x", type=~"cached|cache_read"}[5m]))',
        "sum without (type) (letta:run_tokens:rate5m)",
        'sum(rate(letta_step_tokens_total{type!="prompt"}[5m])) by (model)',
        'avg by (job) (letta_agent:run_tokens:rate5m{type=~"prompt|cache.*"})',
        'sum(rate(letta_run_tokens_total{type="prompt"}[5m]) + rate(letta_run_tokens_total[5m]))',
    ]
    good = [
        "sum by (type) (rate(letta_run_tokens_total[5m]))",
        "sum by (job, type) (rate(letta_run_tokens_total[5m]))",
        'sum(rate(letta_run_tokens_total{type=~"prompt|completion"}[5m]))',
        'sum(rate(letta_run_tokens_total{type="prompt"}[5m])) by (agent_id)',
        'sum(max without (type) (rate(letta_run_tokens_total{type=~"cached|cache_read"}[5m])))',
        'label_replace(sum by (type) (letta:run_tokens:rate5m), "t", "$1", "type", "(.*)")',
        "topk(3, rate(letta_run_tokens_total[5m]))",
        "sum(rate(letta_runs_total[5m]))",
    ]
    for expr in bad:
        assert overlapping_token_sums(expr), expr
    for expr in good:
        assert not overlapping_token_sums(expr), expr


def test_no_dashboard_or_rule_sums_overlapping_token_types() -> None:
    exprs = [(f"{q.uid}: {q.panel} {q.ref}", q.expr) for d in all_dashboards().values() for q in queries(d)]
    exprs += [(f"rule {name}", expr) for name, expr in rule_exprs()]
    token_exprs = [(where, expr) for where, expr in exprs if TOKEN_SELECTOR.search(_blank_strings(expr))]
    assert len(token_exprs) >= 10
    found = {where: overlapping_token_sums(expr) for where, expr in token_exprs}
    assert not {where: sums for where, sums in found.items() if sums}


def declared_names() -> set[str]:
    """Every sample name the metric declarations (exporter/families.py) can expose."""
    from exporter.families import FAMILIES

    suffixes = {"histogram": ("_bucket", "_sum", "_count")}
    return {
        name
        for family in FAMILIES
        for name in (family.exposed, *(family.name + suffix for suffix in suffixes.get(family.kind, ())))
    }


def test_metric_names_are_ones_the_exporter_declares() -> None:
    """Static twin of the live scrape check: dashboards and rules only name metrics the exporter
    declares (plus process_*, Prometheus' up and the listed later metrics)."""
    declared = declared_names()
    records = {name for name, _ in rule_exprs() if ":" in name}
    used = dashboard_metric_names()
    for rule, expr in rule_exprs():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(f"rule {rule}")
    # process_* come from prometheus-client's process collector, which this registry leaves out.
    unknown = {
        n: where for n, where in unexplained(used, declared, records).items() if not n.startswith("process_")
    }
    assert not unknown, f"metrics the exporter does not declare: {unknown}"


def unexplained(used: dict[str, set[str]], exposed: set[str], records: set[str]) -> dict[str, list[str]]:
    """The metrics dashboards or rules name (with where) that are neither exposed by the exporter,
    recorded by a rule, added by Prometheus itself, nor expected later."""
    known = exposed | records | PROMETHEUS_SYNTHETIC | set(EXPECTED_LATER)
    return {name: sorted(where) for name, where in used.items() if name not in known}


def exposed_names(families: Any) -> set[str]:
    """Sample names a set of metric families can expose, whether or not they have samples yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "info": ("_info",),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    }
    names: set[str] = set()
    for family in families:
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


# ---------------------------------------------------------------------------------------------------
# PromQL parses (promtool)


def _promtool_check(exprs: dict[str, str], tmp_path: Path, stem: str) -> subprocess.CompletedProcess[str]:
    rules = [{"record": name, "expr": expr} for name, expr in exprs.items()]
    path = tmp_path / f"{stem}.rules.json"  # JSON is YAML: no YAML library needed
    path.write_text(json.dumps({"groups": [{"name": stem, "rules": rules}]}, indent=1))
    promtool = require_tool("promtool", PROMETHEUS_INSTALLER)
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.integration
def test_every_promql_expression_parses(tmp_path: Path) -> None:
    exprs: dict[str, str] = {}
    where: dict[str, str] = {}
    for dashboard in all_dashboards().values():
        for i, q in enumerate(queries(dashboard)):
            key = f"dashboard_query_{len(exprs)}_{i}"
            exprs[key] = substitute(q.expr, STATIC_VALUES)
            where[key] = f"{q.uid}: {q.panel} {q.ref}"
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                key = f"dashboard_variable_{len(exprs)}"
                exprs[key] = substitute(variable_selector(var["query"]), STATIC_VALUES)
                where[key] = f"{dashboard['uid']}: variable {var['name']}"
    assert len(exprs) > 80
    for expr in exprs.values():
        assert "$" not in expr.replace("$1", ""), f"unsubstituted variable in {expr}"
    result = _promtool_check(exprs, tmp_path, "all")
    if result.returncode != 0:
        failures = []
        for key, expr in exprs.items():
            one = _promtool_check({key: expr}, tmp_path, key)
            if one.returncode != 0:
                failures.append(f"{where[key]}: {expr}\n{one.stdout}{one.stderr}")
        pytest.fail("PromQL that does not parse:\n" + "\n".join(failures or [result.stdout + result.stderr]))


@pytest.mark.integration
def test_the_parse_check_rejects_bad_promql(tmp_path: Path) -> None:
    result = _promtool_check({"bad": 'sum(rate(letta_runs_total{job=~"x"}[5m])'}, tmp_path, "bad")
    assert result.returncode != 0


# ---------------------------------------------------------------------------------------------------
# Grafana schema (tsc against @grafana/schema)

PANEL_PLUGINS = ("timeseries", "stat", "table", "heatmap", "bargauge")


def _ts_for(dashboard: dict[str, Any]) -> str:
    """A TypeScript module that assigns the dashboard JSON to Grafana's Dashboard type, and each
    panel's options (and custom field config) to its plugin's Options (and FieldConfig) type."""
    lines = [
        'import type { Dashboard } from "@grafana/schema";',
        'import type { FromJson } from "dashboards-support/from-json";',
    ]
    lines += [f'import type * as {p} from "@grafana/schema/panelcfg/{p}";' for p in PANEL_PLUGINS]
    lines.append(f"export const dashboard: FromJson<Dashboard> = {json.dumps(dashboard, indent=1)};")
    for panel in visual_panels(dashboard):
        kind = panel["type"]
        assert kind in PANEL_PLUGINS, f"panel type {kind} has no schema check here"
        types_file = SCHEMA_TYPES / "raw" / "composable" / kind / "panelcfg" / "x" / "types.gen.d.ts"
        declared = types_file.read_text()
        pid = panel["id"]
        lines.append(
            f"export const panel_{pid}_options: FromJson<{kind}.Options> = {json.dumps(panel['options'])};"
        )
        custom = panel["fieldConfig"]["defaults"].get("custom")
        if custom is not None:
            assert "export interface FieldConfig" in declared, f"{kind} has no FieldConfig type"
            lines.append(
                f"export const panel_{pid}_custom: FromJson<{kind}.FieldConfig> = {json.dumps(custom)};"
            )
    return "\n".join(lines) + "\n"


def _tsc(files: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    config = {"extends": str(SUPPORT / "tsconfig.base.json"), "files": sorted(files)}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    return subprocess.run(
        [str(TSC), "-p", str(tmp_path / "tsconfig.json")], capture_output=True, text=True, timeout=300
    )


def require_grafana_schema() -> None:
    require_tool("node", ".ci/install-grafana-schema.sh")
    if not (TSC.exists() and SCHEMA_TYPES.exists()):
        pytest.fail("@grafana/schema is not in tests/dashboards_support: run .ci/install-grafana-schema.sh")


@pytest.mark.integration
def test_dashboards_type_check_against_grafana_schema(tmp_path: Path) -> None:
    require_grafana_schema()
    files = {name.replace(".json", ".ts"): _ts_for(d) for name, d in all_dashboards().items()}
    result = _tsc(files, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_schema_check_catches_unknown_keys_and_wrong_types(tmp_path: Path) -> None:
    """The type check is not vacuous: each of these broken dashboards must fail it."""
    require_grafana_schema()
    broken: dict[str, dict[str, Any]] = {}

    def variant(name: str) -> dict[str, Any]:
        broken[name] = json.loads(json.dumps(load("letta-runs-overview.json")))
        return broken[name]

    variant("unknown_panel_key")["panels"][1]["colour"] = "red"
    variant("schema_version_string")["schemaVersion"] = "39"
    variant("unit_number")["panels"][1]["fieldConfig"]["defaults"]["unit"] = 5
    variant("bad_variable_type")["templating"]["list"][0]["type"] = "prometheus"
    d = variant("bad_threshold_mode")
    d["panels"][1]["fieldConfig"]["defaults"]["thresholds"]["mode"] = "relative-ish"
    d = variant("unknown_timeseries_option")
    next(p for p in d["panels"] if p["type"] == "timeseries")["options"]["legend"]["position"] = "top"
    variant("grid_width_string")["panels"][1]["gridPos"]["w"] = "4"
    variant("variable_without_name")["templating"]["list"][1].pop("name")
    result = _tsc({f"{name}.ts": _ts_for(d) for name, d in broken.items()}, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for name in broken:
        failed = re.search(rf"(?:^|/){name}\.ts\(\d+,\d+\): error TS", output, re.M)
        assert failed, f"{name} passed the schema check:\n{output}"


# ---------------------------------------------------------------------------------------------------
# Live: exporter demo + real Prometheus


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def prom_api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    body = json.loads(http_get(url, timeout=10))
    assert body["status"] == "success", body
    return body["data"]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(what: str, check: Any, timeout: float, procs: list[tuple[subprocess.Popen[bytes], Path]]) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for p, log in procs:
            if p.poll() is not None:
                pytest.fail(
                    f"{what}: {p.args[0]} exited early with {p.returncode}; its log:\n{log_tail(log)}"
                )
        try:
            value = check()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError, AssertionError, KeyError) as exc:
            last_error = exc
        time.sleep(0.5)
    logs = "\n".join(f"--- {log.name}\n{log_tail(log)}" for _, log in procs)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error})\n{logs}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class LiveStack:
    prometheus: str
    exporter: str
    job: str
    instance: str
    logs: Path


def exporter_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("letta-exporter")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "exporter"]
    return [*base, "demo", "--listen-address", "127.0.0.1", "--port", str(port), "--poll-interval", "1"]


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    require_tool("prometheus", PROMETHEUS_INSTALLER)  # before the exporter is started for nothing
    tmp = tmp_path_factory.mktemp("live")
    exporter_port = free_port()
    job, instance = "letta-exporter", f"127.0.0.1:{exporter_port}"
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        with open(tmp / "exporter.log", "wb") as log:
            proc = subprocess.Popen(
                exporter_command(exporter_port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
            procs.append((proc, tmp / "exporter.log"))
        exporter = f"http://{instance}"
        wait_for(
            "the exporter's /metrics",
            lambda: b"letta_exporter_up 1.0" in http_get(f"{exporter}/metrics"),
            60,
            procs,
        )
        prometheus = start_prometheus(tmp, job, instance, procs, RULE_FILES)
        yield LiveStack(prometheus, exporter, job, instance, tmp)
    finally:
        for proc, _ in reversed(procs):
            stop(proc)


def start_prometheus(
    tmp: Path,
    job: str,
    instance: str,
    procs: list[tuple[subprocess.Popen[bytes], Path]],
    rule_files: list[Path] | tuple[()] = (),
) -> str:
    """A real Prometheus scraping ``instance`` every second as ``job`` (and evaluating
    ``rule_files``), added to ``procs`` for the caller to stop; its URL once it has scraped once."""
    prometheus_server = require_tool("prometheus", PROMETHEUS_INSTALLER)
    prom_port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [instance]}]}],
    }
    (tmp / "prometheus.yml").write_text(json.dumps(config, indent=1))
    command = [
        str(prometheus_server),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        "--log.level=warn",
    ]
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(command, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, tmp / "prometheus.log"))
    prometheus = f"http://127.0.0.1:{prom_port}"
    wait_for("Prometheus to be ready", lambda: http_get(f"{prometheus}/-/ready"), 60, procs)
    # Prometheus 2.42 applies new targets on a 5 s tick: the first sample lands after ~6 s.
    wait_for(
        "the first scrape of the exporter",
        lambda: prom_api(prometheus, "query", query=f'up{{job="{job}"}} == 1')["result"],
        60,
        procs,
    )
    return prometheus


def has_data(data: dict[str, Any]) -> bool:
    """An instant query returned at least one real (not NaN) value."""
    if data["resultType"] == "vector":
        return any(not math.isnan(float(s["value"][1])) for s in data["result"])
    if data["resultType"] == "scalar":
        return not math.isnan(float(data["result"][1]))
    return bool(data["result"])


def busiest_agent(stack: LiveStack) -> str:
    """An agent with runs that report a TTFT, so every agent-detail panel can have data."""

    def pick() -> str | None:
        result = prom_api(
            stack.prometheus,
            "query",
            query=f'topk(1, sum by (agent_id) (letta_run_ttft_seconds_count{{job="{stack.job}"}}) > 0)'
            f' and on(agent_id) letta_agent_info{{job="{stack.job}"}}',
        )["result"]
        return result[0]["metric"]["agent_id"] if result else None

    return wait_for("an agent with runs", pick, 60, [])


@pytest.mark.integration
def test_every_panel_query_returns_data_from_a_real_prometheus(live_stack: LiveStack) -> None:
    agent = busiest_agent(live_stack)
    values = {
        "job": live_stack.job,
        "instance": live_stack.instance,
        "agent": agent,
        "__rate_interval": "1m",
        "__range": "5m",
        "__interval": "15s",
        "__interval_ms": "15000",
        "__range_s": "300",
    }
    dashboards = all_dashboards()
    # The template variables' own queries find the job, the instance, the agent and the objectives.
    for dashboard in dashboards.values():
        for var in dashboard["templating"]["list"]:
            if var["type"] != "query":
                continue
            label = re.search(r",\s*(\w+)\)$", var["query"]).group(1)
            expected = {
                "job": {live_stack.job},
                "instance": {live_stack.instance},
                "agent_id": {agent},
                "slo": set(SLO_NAMES),
            }[label]

            def lists_expected(
                var: dict[str, Any] = var, label: str = label, expected: set[str] = expected
            ) -> bool:
                selector = substitute(variable_selector(var["query"]), values)
                found = {
                    s.get(label) for s in prom_api(live_stack.prometheus, "series", **{"match[]": selector})
                }
                assert expected <= found, f"variable {var['name']} lists {found}"
                return True

            # The SLO rules need a few evaluations before their series exist: wait for them.
            wait_for(f"variable {var['name']} to list {sorted(expected)}", lists_expected, 60, [])

    # Each query with one real agent, and those that filter by agent also with the overview's
    # default "All" (allValue ".*"); the SLO row's once for each default objective (Grafana repeats
    # the row per objective).
    pending = {
        (q, f"{agent} {slo}"): substitute(q.expr, {**values, "slo": slo})
        for d in dashboards.values()
        for q in queries(d)
        for slo in (SLO_NAMES if "slo" in variables_in(q.expr) else [""])
    }
    pending.update(
        {
            (q, ".*"): substitute(q.expr, {**values, "agent": ".*"})
            for q in queries(dashboards["letta-runs-overview.json"])
            if "agent" in variables_in(q.expr)
        }
    )
    total = len(pending)
    errors: dict[tuple[Query, str], str] = {}
    # Poll until every query has returned data at least once: some series (a run in flight, a
    # percentile over the last minute) come and go with the simulated traffic.
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for key, expr in list(pending.items()):
            try:
                data = prom_api(live_stack.prometheus, "query", query=expr)
            except urllib.error.HTTPError as exc:
                errors[key] = exc.read().decode(errors="replace")
                pending.pop(key)
                continue
            if has_data(data):
                pending.pop(key)
        time.sleep(1)
    assert not errors, "queries Prometheus rejected:\n" + "\n".join(f"{q}: {e}" for q, e in errors.items())
    missing = [f"{q.uid}: {q.panel} [{q.ref}] {expr}" for (q, _), expr in pending.items()]
    assert not missing, f"{len(missing)} of {total} panel queries without data:\n" + "\n".join(missing)


@pytest.mark.integration
def test_rules_load_and_every_recording_rule_has_data(live_stack: LiveStack) -> None:
    def groups() -> list[dict[str, Any]]:
        return prom_api(live_stack.prometheus, "rules")["groups"]

    loaded = groups()
    slo_groups = {f"letta-exporter.slo.{name}" for name in SLO_NAMES}
    assert {g["name"] for g in loaded} == {"letta-exporter.rules", "letta-exporter.alerts", *slo_groups}
    alerts = [r["name"] for g in loaded for r in g["rules"] if r["type"] == "alerting"]
    assert sorted(alerts) == sorted(
        [a.name for a in ALERTS] + ["LettaSLOFastBurn", "LettaSLOSlowBurn"] * len(SLO_NAMES)
    )
    records = [r["name"] for g in loaded for r in g["rules"] if r["type"] == "recording"]

    def all_have_data() -> bool:
        current = groups()
        for group in current:
            for rule in group["rules"]:
                assert rule["health"] != "err", f"{rule['name']}: {rule.get('lastError')}"
        return all(
            has_data(prom_api(live_stack.prometheus, "query", query=f'{name}{{job="{live_stack.job}"}}'))
            for name in records
        )

    wait_for("every recording rule to have data", all_have_data, 120, [])


@pytest.mark.integration
def test_every_metric_named_is_in_a_live_scrape(live_stack: LiveStack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    scraped = exposed_names(
        text_string_to_metric_families(http_get(f"{live_stack.exporter}/metrics").decode())
    )
    used = dashboard_metric_names()
    # The rules as Prometheus loaded them.
    records = set()
    for group in prom_api(live_stack.prometheus, "rules")["groups"]:
        for rule in group["rules"]:
            if rule["type"] == "recording":
                records.add(rule["name"])
            for name in metric_names(rule["query"]):
                used.setdefault(name, set()).add(f"rule {rule['name']}")
    assert len(used) > 25
    missing = unexplained(used, scraped, records)
    assert not missing, f"named by dashboards or rules but not exposed by the exporter: {missing}"


def test_metrics_expected_later_are_ones_a_dashboard_uses() -> None:
    used = dashboard_metric_names()
    assert set(EXPECTED_LATER) <= set(used)


def test_metric_name_extraction() -> None:
    expr = (
        '(sum by (agent_id) (rate(letta_runs_total{job=~"$job", status="failed"}[5m])) * on(agent_id) '
        'group_left(agent_name) max by (agent_id, agent_name) (letta_agent_info{job="x"})) or on(agent_id) '
        'label_replace(letta:runs:rate5m, "agent_name", "$1", "agent_id", "(.*)") > 0.1 '
        "and time() - up offset 1m"
    )
    assert metric_names(expr) == {"letta_runs_total", "letta_agent_info", "letta:runs:rate5m", "up"}


def test_overview_has_an_slo_row_repeated_per_objective() -> None:
    overview = load("letta-runs-overview.json")
    slo = variable(overview, "slo")
    assert slo is not None and slo["multi"] and slo["includeAll"]
    assert re.fullmatch(r"label_values\(letta_slo:\w+:ratio\{job=~\"\$job\"\}, slo\)", slo["query"])
    rows = [p for p in overview["panels"] if p["type"] == "row" and p.get("repeat") == "slo"]
    assert len(rows) == 1, "no SLO row repeated over the slo variable"
    # The row repeats with the panels under it, up to the next row: it is the last.
    below = overview["panels"][overview["panels"].index(rows[0]) + 1 :]
    assert below and all(p["type"] != "row" for p in below)
    exprs = [t["expr"] for p in below for t in p["targets"]]
    assert any("letta_slo:error_budget_remaining:ratio" in e for e in exprs), "no error-budget panel"
    for window in ("1h", "6h"):  # the page's long windows
        assert any(
            f"letta_slo:sli_error:ratio_rate{window}" in e and "/ letta_slo:error_budget:ratio" in e
            for e in exprs
        ), f"no {window} burn rate"
    assert all('slo=~"$slo"' in e for e in exprs)
