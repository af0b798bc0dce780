"""Writes the three Grafana dashboards in this folder from one description, so they share conventions.

    python dashboards/generate.py          # rewrite the JSON files
    python dashboards/generate.py --check  # exit 1 if a committed file differs from what this writes

The JSON files are what users import and what the tests check; this script only keeps them
consistent (one datasource variable, the same selectors, units, descriptions and layout rules).
tests/test_dashboards.py fails when a committed JSON file and this script disagree, so edit here
and re-run it rather than editing the JSON by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from exporter.rules.alerts import threshold  # noqa: E402
from exporter.rules.declare import prom_duration  # noqa: E402
from exporter.rules.generated import write_or_check  # noqa: E402
from exporter.rules.slo_rules import FAST, SLOW  # noqa: E402

DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
SEL = 'job=~"$job", instance=~"$instance"'
ASEL = SEL + ', agent_id=~"$agent"'
FAILED = ', status="failed"'
SINCE_LAST_POLL = (
    f"time() - max by (instance) (letta_exporter_last_successful_poll_timestamp_seconds{{{SEL}}})"
)
PROMPT_COMPLETION = ', type=~"prompt|completion"'
TAGS = ["letta", "letta-exporter"]
OVERVIEW_UID = "letta-runs-overview"
AGENT_UID = "letta-agent-detail"
HEALTH_UID = "letta-exporter-health"

# The alert thresholds panels draw and name, from the alerts' one declaration (exporter/rules/alerts.py).
FAILURE_RATIO = threshold("LettaRunFailureRatioHigh", "ratio")
TTFT_P95 = threshold("LettaRunTTFTHigh", "p95")
STUCK_RUN_AGE = threshold("LettaRunsStuck", "age")
POLL_STALE = threshold("LettaExporterPollingStale", "age")
FALLING_BEHIND = threshold("LettaExporterFallingBehind", "age")
BUDGET = threshold("LettaSpendOverBudget", "budget")
FAILURE_RATIO_CRIT = FAILURE_RATIO.value
FAILURE_RATIO_WARN = FAILURE_RATIO_CRIT / 2  # orange from half the alert threshold, like the others
TTFT_P95_ALERT = TTFT_P95.value
STUCK_RUN_AGE_ALERT = STUCK_RUN_AGE.value
POLL_STALE_ALERT = POLL_STALE.value
FALLING_BEHIND_ALERT = FALLING_BEHIND.value

Panel = dict[str, Any]


# ---------------------------------------------------------------------------------------------------
# Query helpers


def target(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if instant:
        t["format"] = "table"
    return t


def heatmap_target(expr: str) -> dict[str, Any]:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "format": "heatmap",
        "legendFormat": "{{le}}",
        "range": True,
        "instant": False,
        "refId": "A",
    }


def rate(metric: str, sel: str, by: str | None = None) -> str:
    inner = f"rate({metric}{{{sel}}}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q: float, metric: str, sel: str, by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{{{sel}}}[{RI}])))"


def ratio_or_zero(num_sel: str, metric: str, sel: str, by: str, *, none_is_zero: bool = False) -> str:
    """A per-``by`` ratio that reads 0, not 'no data', while the numerator has no series yet. With
    ``none_is_zero`` it also reads 0 while the denominator is 0 (nothing happened: 0/0 is NaN)."""
    total = f"sum by ({by}) (rate({metric}{{{sel}}}[{RI}]))"
    part = f"sum by ({by}) (rate({metric}{{{sel}, {num_sel}}}[{RI}]))"
    if none_is_zero:
        return f"({part} or {total} * 0) / ({total} > 0) or {total} * 0"
    return f"({part} or {total} * 0) / {total}"


def rate_or_zero(metric: str, sel: str, by: str, base: str, base_sel: str) -> str:
    """A per-``by`` rate that reads 0 while ``metric`` has no series yet (its labels appear with the
    first event); ``base`` is a counter with the same ``by`` labels that exists from the start."""
    return f"{rate(metric, sel, by)} or {rate(base, base_sel, by)} * 0"


def with_agent_name(expr: str, sel: str = SEL) -> str:
    """Adds ``agent_name`` from ``letta_agent_info``; agents without an info series (the shared
    ``other`` bucket past the agent cap) keep their ID as name instead of dropping out."""
    info = f"max by (agent_id, agent_name) (letta_agent_info{{{sel}}})"
    return (
        f"(({expr}) * on(agent_id) group_left(agent_name) {info})"
        f' or on(agent_id) label_replace({expr}, "agent_name", "$1", "agent_id", "(.*)")'
    )


# ---------------------------------------------------------------------------------------------------
# Panel helpers


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN_ONLY = thresholds((None, "green"))


def _base(
    kind: str, title: str, description: str, unit: str, targets: list[dict[str, Any]], w: int, h: int
) -> Panel:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "_size": (w, h),
    }


def timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[dict[str, Any]],
    *,
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
    threshold_line: float | None = None,
    legend_calcs: tuple[str, ...] = ("mean", "max", "lastNotNull"),
) -> Panel:
    p = _base("timeseries", title, description, unit, targets, w, h)
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 10,
        "gradientMode": "none",
        "showPoints": "never",
        "spanNulls": False,
        "axisPlacement": "auto",
        "axisLabel": "",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "dashed" if threshold_line is not None else "off"},
    }
    defaults = p["fieldConfig"]["defaults"]
    defaults["custom"] = custom
    defaults["color"] = {"mode": "palette-classic"}
    if threshold_line is not None:
        defaults["thresholds"] = thresholds((None, "green"), (threshold_line, "red"))
    else:
        defaults["thresholds"] = GREEN_ONLY
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    p["options"] = {
        "legend": {
            "calcs": list(legend_calcs),
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def stat(
    title: str,
    description: str,
    unit: str,
    targets: list[dict[str, Any]],
    *,
    w: int = 4,
    h: int = 4,
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    color_mode: str = "value",
    graph_mode: str = "area",
    text_mode: str = "auto",
    mappings: list[dict[str, Any]] | None = None,
    decimals: int | None = None,
) -> Panel:
    p = _base("stat", title, description, unit, targets, w, h)
    defaults = p["fieldConfig"]["defaults"]
    defaults["thresholds"] = thresholds(*steps)
    defaults["color"] = {"mode": "thresholds"}
    defaults["mappings"] = mappings or []
    if decimals is not None:
        defaults["decimals"] = decimals
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "auto",
        "textMode": text_mode,
        "colorMode": color_mode,
        "graphMode": graph_mode,
        "justifyMode": "auto",
        "percentChangeColorMode": "standard",
        "showPercentChange": False,
        "wideLayout": True,
    }
    return p


def heatmap(title: str, description: str, expr: str, *, w: int = 12, h: int = 8) -> Panel:
    p = _base("heatmap", title, description, "s", [heatmap_target(expr)], w, h)
    p["fieldConfig"]["defaults"]["custom"] = {
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "scaleDistribution": {"type": "linear"},
    }
    p["options"] = {
        "calculate": False,
        "cellGap": 1,
        "cellValues": {"unit": "runs/s"},
        "color": {
            "exponent": 0.5,
            "fill": "dark-orange",
            "mode": "scheme",
            "reverse": False,
            "scale": "exponential",
            "scheme": "Oranges",
            "steps": 64,
        },
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "showValue": "never",
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"},
    }
    return p


def bargauge(
    title: str, description: str, unit: str, expr: str, legend: str, *, w: int = 12, h: int = 8
) -> Panel:
    p = _base("bargauge", title, description, unit, [target(expr, legend, instant=True)], w, h)
    p["targets"][0]["format"] = "time_series"
    defaults = p["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "continuous-BlPu"}
    defaults["thresholds"] = GREEN_ONLY
    defaults["min"] = 0
    p["options"] = {
        "displayMode": "gradient",
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": False},
        "maxVizHeight": 300,
        "minVizHeight": 16,
        "minVizWidth": 8,
        "namePlacement": "auto",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return p


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def layout(panels: list[Panel]) -> list[Panel]:
    """Assigns ids and grid positions: panels flow left to right and wrap at 24 columns; a row
    starts a new line."""
    out: list[Panel] = []
    x = y = line_h = 0
    for panel_id, panel in enumerate(panels, start=1):
        w, h = panel.pop("_size")
        if panel["type"] == "row" or x + w > 24:
            y += line_h
            x = line_h = 0
        placed = {"id": panel_id, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **panel}
        out.append(placed)
        x += w
        line_h = max(line_h, h)
        if panel["type"] == "row":
            y += h
            x = line_h = 0
    return out


# ---------------------------------------------------------------------------------------------------
# Dashboard skeleton


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "default", "value": "default"},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(name: str, label: str, query: str, *, multi: bool, include_all: bool) -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "hide": 0,
        "multi": multi,
        "includeAll": include_all,
        "options": [],
        "skipUrlSync": False,
    }
    if include_all:
        var["allValue"] = ".*"
        var["current"] = (
            {"text": ["All"], "value": ["$__all"]} if multi else {"text": "All", "value": "$__all"}
        )
    return var


def job_instance_vars() -> list[dict[str, Any]]:
    return [
        datasource_var(),
        query_var("job", "Job", "label_values(letta_exporter_up, job)", multi=True, include_all=True),
        query_var(
            "instance",
            "Instance",
            'label_values(letta_exporter_up{job=~"$job"}, instance)',
            multi=True,
            include_all=True,
        ),
    ]


def agent_var(*, multi: bool) -> dict[str, Any]:
    return query_var(
        "agent",
        "Agent ID",
        'label_values(letta_runs_total{job=~"$job", instance=~"$instance"}, agent_id)',
        multi=multi,
        include_all=multi,
    )


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": TAGS,
                "targetBlank": False,
                "title": "Letta dashboards",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "panels": layout(panels),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": TAGS,
        "templating": {"list": variables},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# ---------------------------------------------------------------------------------------------------
# Shared run views (overview: all or some agents; agent detail: one agent)


def status_ratio(sel: str, status: str) -> str:
    """Share of finished runs with ``status``; 0 (not 'no data') before the first such run."""
    total = rate("letta_runs_total", sel)
    part = rate("letta_runs_total", sel + f', status="{status}"')
    return f"({part} or {total} * 0) / {total}"


def failure_ratio(sel: str) -> str:
    return status_ratio(sel, "failed")


def run_stats(sel: str, scope: str) -> list[Panel]:
    return [
        stat(
            "Runs / s",
            f"Finished runs per second ({scope}), all statuses.",
            "runs/s",
            [target(rate("letta_runs_total", sel), "runs/s")],
            decimals=2,
        ),
        stat(
            "Failure ratio",
            f"Share of finished runs ({scope}) whose status is failed. Orange above "
            f"{FAILURE_RATIO_WARN * 100:g}%, red above {FAILURE_RATIO.text} (the alert threshold).",
            "percentunit",
            [target(failure_ratio(sel), "failed")],
            steps=((None, "green"), (FAILURE_RATIO_WARN, "orange"), (FAILURE_RATIO_CRIT, "red")),
        ),
        stat(
            "TTFT p95",
            f"95th percentile time to first token ({scope}). Only runs that report a TTFT are counted. "
            f"Red at the alert threshold ({TTFT_P95.text}).",
            "s",
            [target(quantile(0.95, "letta_run_ttft_seconds", sel), "p95")],
            steps=((None, "green"), (TTFT_P95_ALERT / 2, "orange"), (TTFT_P95_ALERT, "red")),
        ),
        stat(
            "Run duration p95",
            f"95th percentile wall time of finished runs ({scope}).",
            "s",
            [target(quantile(0.95, "letta_run_duration_seconds", sel), "p95")],
        ),
        stat(
            "Active runs",
            f"Runs in flight (created or running) at the exporter's last poll ({scope}); 0 while the "
            "exporter is up and nothing is in flight.",
            "short",
            [target(f"sum(letta_active_runs{{{sel}}}) or 0 * max(letta_exporter_up{{{SEL}}})", "active")],
            graph_mode="area",
        ),
    ]


def run_panels(sel: str, scope: str) -> list[Panel]:
    return [
        row("Runs"),
        timeseries(
            "Runs / s by status",
            f"Finished runs per second ({scope}), stacked by terminal status "
            "(completed, failed, cancelled). Each run is counted once, when the exporter sees it finish.",
            "runs/s",
            [target(rate("letta_runs_total", sel, "status"), "{{status}}")],
            w=8,
            stack=True,
        ),
        timeseries(
            "Failure and cancellation ratio",
            f"Share of finished runs ({scope}) that failed, and that were cancelled. The dashed line is "
            f"the failure-ratio alert threshold ({FAILURE_RATIO.text}).",
            "percentunit",
            [
                target(failure_ratio(sel), "failed", "A"),
                target(
                    status_ratio(sel, "cancelled"),
                    "cancelled",
                    "B",
                ),
            ],
            w=8,
            maximum=1,
            threshold_line=FAILURE_RATIO_CRIT,
        ),
        timeseries(
            "Failures / s by stop reason",
            f"Failed runs per second ({scope}) by Letta's stop reason (llm_api_error, error, "
            "invalid_tool_call, ...; 'none' when Letta gave none). Shows why runs fail.",
            "runs/s",
            [target(rate("letta_runs_total", sel + FAILED, "stop_reason"), "{{stop_reason}}")],
            w=8,
            stack=True,
        ),
    ]


def latency_panels(sel: str, scope: str, *, duration_by_status: bool) -> list[Panel]:
    ttft = "letta_run_ttft_seconds"
    duration = "letta_run_duration_seconds"
    if duration_by_status:
        duration_targets = [
            target(quantile(0.5, duration, sel, "status"), "p50 {{status}}", "A"),
            target(quantile(0.95, duration, sel, "status"), "p95 {{status}}", "B"),
        ]
        duration_desc = (
            f"Median and 95th percentile wall time of finished runs ({scope}) by status, from "
            "Letta's total_duration_ns (else run_ns, else completed_at - created_at)."
        )
    else:
        duration_targets = [
            target(quantile(0.5, duration, sel), "p50", "A"),
            target(quantile(0.9, duration, sel), "p90", "B"),
            target(quantile(0.99, duration, sel), "p99", "C"),
        ]
        duration_desc = (
            f"p50, p90 and p99 wall time of finished runs ({scope}), from Letta's total_duration_ns "
            "(else run_ns, else completed_at - created_at)."
        )
    return [
        row("Latency"),
        timeseries(
            "Time to first token p50 / p90 / p99",
            f"Percentiles of the time to first token ({scope}), estimated from the histogram. Runs that "
            "report no TTFT (Letta's newer agent loops, self-hosted, without a trace) are not counted. "
            f"The dashed line is the p95 alert threshold ({TTFT_P95.text}).",
            "s",
            [
                target(quantile(0.5, ttft, sel), "p50", "A"),
                target(quantile(0.9, ttft, sel), "p90", "B"),
                target(quantile(0.99, ttft, sel), "p99", "C"),
            ],
            threshold_line=TTFT_P95_ALERT,
        ),
        heatmap(
            "Time to first token distribution",
            f"Heatmap of time to first token ({scope}): runs per second falling into each histogram "
            "bucket. Bands show the shape of latency that percentiles hide (e.g. two model tiers).",
            f"sum by (le) (rate({ttft}_bucket{{{sel}}}[{RI}]))",
        ),
        timeseries(
            "Run duration" + (" by status" if duration_by_status else " p50 / p90 / p99"),
            duration_desc,
            "s",
            duration_targets,
        ),
        timeseries(
            "Steps per run",
            f"Agent steps per finished run ({scope}): median, 95th percentile and mean. A rising p95 "
            "often means agents looping on tools or hitting max_steps.",
            "short",
            [
                target(quantile(0.5, "letta_run_steps", sel), "p50", "A"),
                target(quantile(0.95, "letta_run_steps", sel), "p95", "B"),
                target(
                    f"sum(rate(letta_run_steps_sum{{{sel}}}[{RI}]))"
                    f" / sum(rate(letta_run_steps_count{{{sel}}}[{RI}]))",
                    "mean",
                    "C",
                ),
            ],
        ),
    ]


def token_panels(sel: str, scope: str) -> list[Panel]:
    # cached and cache_read name the same cache reads (one, the other or both are filled): the
    # larger of the two per series, never their sum.
    cache_reads = (
        f'max without (type) (rate(letta_run_tokens_total{{{sel}, type=~"cached|cache_read"}}[{RI}]))'
    )
    cached_share = f'sum({cache_reads}) / sum(rate(letta_run_tokens_total{{{sel}, type="prompt"}}[{RI}]))'
    return [
        timeseries(
            "Tokens / s by type",
            f"Tokens used by finished runs per second ({scope}) by type. prompt + completion is the "
            "total; the other types are parts of those, not additions: cached, cache_read (the same "
            "cache reads under two names) and cache_creation are parts of prompt, reasoning is part "
            "of completion. So the lines are not stacked, and never add them up.",
            "tokens/s",
            [target(rate("letta_run_tokens_total", sel, "type"), "{{type}}")],
        ),
        timeseries(
            "Cached-token share of prompt tokens",
            f"Prompt tokens read from the provider's prompt cache as a share of all prompt tokens "
            f"({scope}). Letta reports cache reads as 'cached' and/or 'cache_read' (the same tokens): "
            "the larger of the two is used, never their sum. Higher is cheaper and faster.",
            "percentunit",
            [target(cached_share, "cached share")],
            maximum=1,
        ),
    ]


# ---------------------------------------------------------------------------------------------------
# Cost (docs/cost.md): estimates from the exporter's prices; the totals over the dashboard's time range
# use [$__range], everything else [$__rate_interval].

COST = "letta_run_cost_usd_total"
COST_NOTE = (
    "Estimated from list prices or the exporter's price file (docs/cost.md); models without a price are "
)
COST_NOTE += "not in it (see Unpriced tokens)."


def spend_in_range(sel: str, by: str = "") -> str:
    inner = f"increase({COST}{{{sel}}}[$__range])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def cost_stats(sel: str, scope: str) -> list[Panel]:
    return [
        stat(
            "Spend in the time range",
            f"Estimated US dollars spent by finished runs ({scope}) over the dashboard's time range. "
            + COST_NOTE,
            "currencyUSD",
            [target(spend_in_range(sel), "spend")],
            w=6,
            decimals=2,
        ),
        stat(
            "Spend per day at the current rate",
            f"What a day would cost at the current spend rate ({scope}): US dollars per second times "
            f"86,400. Orange from half the LettaSpendOverBudget budget ({BUDGET.text} over 24 hours), red "
            "at it (the alert itself sums the last 24 hours of all agents of a job). " + COST_NOTE,
            "currencyUSD",
            [target(f"{rate(COST, sel)} * 86400", "per day")],
            w=6,
            steps=((None, "green"), (BUDGET.value / 2, "orange"), (BUDGET.value, "red")),
            decimals=2,
        ),
    ]


def spend_by_model(sel: str, scope: str) -> Panel:
    return timeseries(
        "Spend per hour by model",
        f"Estimated US dollars per hour ({scope}) by model and provider, stacked: the height is the "
        "total. " + COST_NOTE,
        "currencyUSD",
        [target(f"{rate(COST, sel, 'model, provider')} * 3600", "{{model}} ({{provider}})")],
        stack=True,
    )


def cost_panels(scope: str) -> list[Panel]:
    """The overview's Cost row: totals, who and what spends, and the tokens that have no price."""
    unpriced = f"letta_unpriced_tokens_total{{{SEL}{PROMPT_COMPLETION}}}"
    return [
        row("Cost"),
        *cost_stats(ASEL, scope),
        stat(
            "Unpriced tokens / s",
            "Prompt and completion tokens per second of models with no price (all agents of the "
            "selected exporters): they are in no spend figure. Red above 0: give those models a price in "
            "LETTA_EXPORTER_PRICE_FILE (the exporter's log names each once; docs/cost.md).",
            "tokens/s",
            [target(f"sum(rate({unpriced}[{RI}]))", "unpriced")],
            w=6,
            steps=((None, "green"), (1e-9, "red")),
        ),
        stat(
            "Models without a price",
            "How many models used tokens without a price in the time range (all agents of the selected "
            "exporters); the panel below names them. 0 when every model is priced.",
            "short",
            [target(f"count(sum by (model) (increase({unpriced}[$__range])) > 0) or vector(0)", "models")],
            w=6,
            steps=((None, "green"), (1, "red")),
        ),
        spend_by_model(ASEL, scope),
        timeseries(
            "Spend per hour by agent",
            f"Estimated US dollars per hour of the ten agents spending most now ({scope}). " + COST_NOTE,
            "currencyUSD",
            [target(with_agent_name(f"topk(10, {rate(COST, ASEL, 'agent_id')}) * 3600"), "{{agent_name}}")],
        ),
        bargauge(
            "Top spenders",
            f"The ten agents that spent most over the dashboard's time range ({scope}), in estimated US "
            "dollars. " + COST_NOTE,
            "currencyUSD",
            f"topk(10, {with_agent_name(spend_in_range(ASEL, 'agent_id'))})",
            "{{agent_name}}",
        ),
        bargauge(
            "Spend by model in the time range",
            f"Estimated US dollars by model and provider over the dashboard's time range ({scope}). "
            + COST_NOTE,
            "currencyUSD",
            spend_in_range(ASEL, "model, provider"),
            "{{model}} ({{provider}})",
        ),
        timeseries(
            "Unpriced tokens / s by model",
            "Prompt and completion tokens per second of models with no price, by model (all agents of the "
            "selected exporters). Every model seen has a line, at 0 while it is priced: one above 0 needs a "
            "price in LETTA_EXPORTER_PRICE_FILE (docs/cost.md).",
            "tokens/s",
            [target(f"sum by (model, type) (rate({unpriced}[{RI}]))", "{{model}} {{type}}")],
            w=24,
        ),
    ]


# ---------------------------------------------------------------------------------------------------
# SLOs: one row per objective, repeated over the objectives whose rules Prometheus has loaded (the
# chart's default objectives, or an operator's own: rules/slo/, docs/slo.md). These panels read the
# SLO recording rules; without them the row stays empty.

SLO_SEL = 'job=~"$job", slo=~"$slo"'
# The burn-rate windows the alerts read: the fast-burn pair's long windows and the slow burn's longest.
BURN_WINDOWS = [prom_duration(w) for w in (FAST.pairs[0][0], FAST.pairs[1][0], SLOW.pairs[-1][0])]


def slo_var() -> dict[str, Any]:
    return query_var(
        "slo",
        "SLO",
        'label_values(letta_slo:error_budget_remaining:ratio{job=~"$job"}, slo)',
        multi=True,
        include_all=True,
    )


def slo_named(expr: str) -> str:
    """An SLO series with an ``agent_name``: the agent's for an objective that covers each agent on
    its own, "all agents" for one that covers them together (its series have no agent_id)."""
    return f'label_replace({with_agent_name(expr)}, "agent_name", "all agents", "agent_name", "")'


def slo_panels() -> list[Panel]:
    factors = ", ".join(f"{long // 3600}h over {f:g}" for long, _, f in FAST.pairs)
    burn = [
        target(
            slo_named(
                f"letta_slo:sli_error:ratio_rate{w}{{{SLO_SEL}}} / letta_slo:error_budget:ratio{{{SLO_SEL}}}"
            ),
            f"{w} {{{{agent_name}}}}",
            chr(ord("A") + i),
        )
        for i, w in enumerate(BURN_WINDOWS)
    ]
    return [
        {**row("SLO $slo"), "repeat": "slo"},
        stat(
            "Error budget left ($slo)",
            "What is left of the objective's error budget over its period "
            "(letta_slo:error_budget_remaining:ratio): 100% untouched, 0 spent, below 0 overspent. One value "
            "per agent where the objective covers each agent on its own.",
            "percentunit",
            [target(slo_named(f"letta_slo:error_budget_remaining:ratio{{{SLO_SEL}}}"), "{{agent_name}}")],
            w=6,
            h=8,
            steps=((None, "red"), (0, "orange"), (0.25, "green")),
            decimals=1,
        ),
        stat(
            "Good runs over the period ($slo)",
            "The share of the objective's runs that were good over its period (1 - "
            "letta_slo:sli_error:ratio_period); the objective is met while this stays at or above it.",
            "percentunit",
            [target(slo_named(f"1 - letta_slo:sli_error:ratio_period{{{SLO_SEL}}}"), "{{agent_name}}")],
            w=6,
            h=8,
            decimals=3,
        ),
        timeseries(
            "Burn rate ($slo)",
            "How many times as fast as the objective allows the error budget is being spent, over "
            f"{', '.join(BURN_WINDOWS)}: 1 spends exactly the budget over the period. LettaSLOFastBurn "
            f"pages at {factors} (with a short window confirming: the dashed line is the first); "
            "LettaSLOSlowBurn tickets at "
            + ", ".join(f"{prom_duration(long)} over {f:g}" for long, _, f in SLOW.pairs)
            + ".",
            "short",
            burn,
            threshold_line=FAST.pairs[0][2],
        ),
    ]


# ---------------------------------------------------------------------------------------------------
# The dashboards


def overview() -> dict:
    scope = "selected agents"
    per_agent = {
        "A": rate("letta_runs_total", ASEL, "agent_id"),
        "B": ratio_or_zero('status="failed"', "letta_runs_total", ASEL, "agent_id"),
        "C": quantile(0.95, "letta_run_ttft_seconds", ASEL, "agent_id"),
        "D": quantile(0.95, "letta_run_duration_seconds", ASEL, "agent_id"),
        "E": rate("letta_run_tokens_total", ASEL + PROMPT_COMPLETION, "agent_id"),
        "F": f"sum by (agent_id) (letta_active_runs{{{ASEL}}})"
        f" or sum by (agent_id) (letta_agent_info{{{ASEL}}}) * 0",
    }
    columns = {
        "A": ("Runs / s", "runs/s"),
        "B": ("Failure ratio", "percentunit"),
        "C": ("TTFT p95", "s"),
        "D": ("Duration p95", "s"),
        "E": ("Tokens / s", "tokens/s"),
        "F": ("Active runs", "short"),
    }
    table = _base(
        "table",
        "Agents",
        "One row per agent with its current run rate, failure ratio, TTFT and duration p95, token rate "
        "and runs in flight. Names come from letta_agent_info (agents past the exporter's agent cap "
        "share the ID 'other'). Click an agent to open the agent-detail dashboard for it.",
        "short",
        [target(with_agent_name(expr), "__auto", ref, instant=True) for ref, expr in per_agent.items()],
        24,
        10,
    )
    detail_link = {
        "title": "Open agent detail",
        "url": f"/d/{AGENT_UID}/{AGENT_UID}?${{__url_time_range}}&${{datasource:queryparam}}"
        "&${job:queryparam}&${instance:queryparam}&var-agent=${__data.fields.agent_id}",
        "targetBlank": False,
    }
    overrides: list[dict[str, Any]] = [
        {
            "matcher": {"id": "byName", "options": "Value #" + ref},
            "properties": [{"id": "unit", "value": unit}, {"id": "displayName", "value": name}],
        }
        for ref, (name, unit) in columns.items()
    ]
    overrides[1]["properties"] += [
        {"id": "custom.cellOptions", "value": {"type": "color-text"}},
        {"id": "color", "value": {"mode": "thresholds"}},
        {
            "id": "thresholds",
            "value": thresholds((None, "green"), (FAILURE_RATIO_WARN, "orange"), (FAILURE_RATIO_CRIT, "red")),
        },
    ]
    # agent_id keeps its field name as header: the link reads it as ${__data.fields.agent_id}.
    overrides.append(
        {
            "matcher": {"id": "byName", "options": "agent_name"},
            "properties": [{"id": "displayName", "value": "Agent"}, {"id": "links", "value": [detail_link]}],
        }
    )
    overrides.append(
        {
            "matcher": {"id": "byName", "options": "agent_id"},
            "properties": [{"id": "links", "value": [detail_link]}],
        }
    )
    table["fieldConfig"]["defaults"]["custom"] = {
        "align": "auto",
        "cellOptions": {"type": "auto"},
        "filterable": True,
        "inspect": False,
    }
    table["fieldConfig"]["defaults"]["thresholds"] = GREEN_ONLY
    table["fieldConfig"]["overrides"] = overrides
    table["options"] = {
        "cellHeight": "sm",
        "frameIndex": 0,
        "showHeader": True,
        "sortBy": [{"desc": True, "displayName": "Runs / s"}],
    }
    table["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "excludeByName": {"Time": True},
                "indexByName": {
                    "agent_name": 0,
                    "agent_id": 1,
                    **{f"Value #{r}": i + 2 for i, r in enumerate(columns)},
                },
                "renameByName": {},
            },
        },
    ]

    panels: list[Panel] = [
        row("At a glance"),
        *run_stats(ASEL, scope),
        stat(
            "Oldest active run",
            "Age of the oldest run still in flight, across all agents of the selected exporters (the "
            "metric has no agent label). A value that keeps growing is a stuck run; red at the "
            f"LettaRunsStuck threshold ({STUCK_RUN_AGE.text}).",
            "s",
            [target(f"max(letta_active_run_max_age_seconds{{{SEL}}})", "oldest")],
            steps=((None, "green"), (STUCK_RUN_AGE_ALERT / 2, "orange"), (STUCK_RUN_AGE_ALERT, "red")),
        ),
        *run_panels(ASEL, scope),
        *latency_panels(ASEL, scope, duration_by_status=False),
        row("Tokens and models"),
        *token_panels(ASEL, scope),
        timeseries(
            "Tokens / s by model",
            "Prompt and completion tokens per second by model, summed from the steps of finished runs "
            "(all agents of the selected exporters: step metrics carry no agent label).",
            "tokens/s",
            [
                target(
                    rate("letta_step_tokens_total", SEL + PROMPT_COMPLETION, "model, type"),
                    "{{model}} {{type}}",
                )
            ],
        ),
        timeseries(
            "Steps / s by model and stop reason",
            "Agent steps per second by model and step stop reason, from the steps of finished runs (all "
            "agents of the selected exporters). A step that ends in an error shows which model failed.",
            "steps/s",
            [
                target(
                    rate("letta_steps_total", SEL, "model, status, stop_reason"),
                    "{{model}} {{status}} {{stop_reason}}",
                )
            ],
        ),
        *cost_panels(scope),
        row("Tools and callbacks"),
        bargauge(
            "Top tools",
            "The ten most used tools right now: tool calls per second of finished runs, by tool name "
            "(or tool ID where the name could not be resolved). All agents of the selected exporters.",
            "calls/s",
            f"topk(10, {rate('letta_run_tool_calls_total', SEL, 'tool')})",
            "{{tool}}",
        ),
        timeseries(
            "Completion callbacks by outcome",
            "Run-completion callbacks Letta made per second, by outcome (success: HTTP 2xx; failure: an "
            "error or another status). Empty when no run sets a callback_url.",
            "ops",
            [target(rate("letta_run_callbacks_total", SEL, "outcome"), "{{outcome}}")],
        ),
        row("In flight"),
        timeseries(
            "Active runs by status",
            f"Runs in flight at each poll ({scope}), stacked by status: created (queued) and running.",
            "short",
            [target(f"sum by (status) (letta_active_runs{{{ASEL}}})", "{{status}}")],
            stack=True,
        ),
        timeseries(
            "Age of the oldest active run",
            "Age of the oldest run still in flight (all agents of the selected exporters). A saw-tooth is "
            "normal; a line that only climbs is a stuck run. The dashed line is the LettaRunsStuck "
            f"threshold ({STUCK_RUN_AGE.text}).",
            "s",
            [target(f"max by (instance) (letta_active_run_max_age_seconds{{{SEL}}})", "{{instance}}")],
            threshold_line=STUCK_RUN_AGE_ALERT,
        ),
        row("Agents"),
        table,
        *slo_panels(),
    ]
    return dashboard(
        OVERVIEW_UID,
        "Letta / Runs overview",
        "Traffic, failures and why, latency, token spend, tools and stuck runs of Letta agents, from "
        "letta-exporter. Pick an agent in the Agents table for its own dashboard.",
        [*job_instance_vars(), agent_var(multi=True), slo_var()],
        panels,
    )


def agent_detail() -> dict:
    scope = "this agent"
    name_panel = stat(
        "Agent",
        "The agent's name from letta_agent_info (the exporter refreshes names from Letta's agent list).",
        "none",
        [target(f"max by (agent_name) (letta_agent_info{{{ASEL}}})", "{{agent_name}}")],
        w=4,
        text_mode="name",
        graph_mode="none",
        color_mode="none",
    )
    stats = run_stats(ASEL, scope)
    panels: list[Panel] = [
        row("At a glance"),
        name_panel,
        *[{**p, "_size": (4, 4)} for p in stats],
        *run_panels(ASEL, scope),
        *latency_panels(ASEL, scope, duration_by_status=True),
        row("Tokens"),
        *token_panels(ASEL, scope),
        timeseries(
            "Tokens per run",
            "Average tokens per finished run of this agent, by type (tokens per second divided by runs "
            "per second over the same window).",
            "short",
            [
                target(
                    rate("letta_run_tokens_total", ASEL + PROMPT_COMPLETION, "type")
                    + " / ignoring(type) group_left "
                    + rate("letta_runs_total", ASEL),
                    "{{type}}",
                )
            ],
        ),
        timeseries(
            "Active runs by status",
            "This agent's runs in flight at each poll, stacked by status: created (queued) and running.",
            "short",
            [target(f"sum by (status) (letta_active_runs{{{ASEL}}})", "{{status}}")],
            stack=True,
        ),
        row("Cost"),
        *cost_stats(ASEL, scope),
        spend_by_model(ASEL, scope),
    ]
    return dashboard(
        AGENT_UID,
        "Letta / Agent detail",
        "Runs, failures, latency and tokens of one Letta agent, chosen with the Agent ID variable "
        "(linked from the Agents table of the runs overview).",
        [*job_instance_vars(), agent_var(multi=False)],
        panels,
    )


def value_map(*entries: tuple[str, str, str]) -> list[dict[str, Any]]:
    """Grafana value mappings, one (value, colour, text) each."""
    options = {
        value: {"color": color, "index": i, "text": text} for i, (value, color, text) in enumerate(entries)
    }
    return [{"type": "value", "options": options}]


def exporter_health() -> dict:
    up_mappings = value_map(("0", "red", "DOWN"), ("1", "green", "UP"))
    api = "letta_exporter_api_requests_total"
    panels: list[Panel] = [
        row("Status"),
        stat(
            "Letta reachable",
            "letta_exporter_up per exporter instance: UP when the exporter's last poll reached Letta, "
            "DOWN when it could not (network, auth, Letta down). LettaExporterDown fires on DOWN.",
            "none",
            [target(f"letta_exporter_up{{{SEL}}}", "{{instance}}")],
            steps=((None, "red"), (1, "green")),
            color_mode="background",
            graph_mode="none",
            mappings=up_mappings,
        ),
        stat(
            "Scrape target up",
            "Prometheus' own up series for the exporter: DOWN when Prometheus cannot scrape /metrics.",
            "none",
            [target(f"up{{{SEL}}}", "{{instance}}")],
            steps=((None, "red"), (1, "green")),
            color_mode="background",
            graph_mode="none",
            mappings=up_mappings,
        ),
        stat(
            "Since last successful poll",
            "Seconds since the exporter last completed a poll of Letta. It should stay near the poll "
            f"interval; LettaExporterPollingStale fires above {POLL_STALE.text}.",
            "s",
            [
                target(
                    SINCE_LAST_POLL,
                    "{{instance}}",
                )
            ],
            steps=((None, "green"), (POLL_STALE_ALERT / 2, "orange"), (POLL_STALE_ALERT, "red")),
        ),
        stat(
            "Tracked runs",
            "Runs the exporter holds in memory: in flight, or finished and awaiting enrichment.",
            "short",
            [target(f"sum(letta_exporter_tracked_runs{{{SEL}}})", "tracked")],
        ),
        stat(
            "Exporter version",
            "letta-exporter build running on each instance (letta_exporter_build_info).",
            "none",
            [target(f"max by (instance, version) (letta_exporter_build_info{{{SEL}}})", "{{version}}")],
            text_mode="name",
            graph_mode="none",
            color_mode="none",
        ),
        stat(
            "Uptime",
            "Time since the exporter process started (process_start_time_seconds).",
            "s",
            [target(f"time() - max by (instance) (process_start_time_seconds{{{SEL}}})", "{{instance}}")],
            graph_mode="none",
        ),
        row("Polling"),
        timeseries(
            "Letta reachable and scrape up",
            "letta_exporter_up (the exporter reached Letta) and Prometheus' up (Prometheus reached the "
            "exporter) per instance over time: 1 is good, 0 is down.",
            "none",
            [
                target(f"letta_exporter_up{{{SEL}}}", "letta {{instance}}", "A"),
                target(f"up{{{SEL}}}", "scrape {{instance}}", "B"),
            ],
            w=8,
            maximum=1,
        ),
        timeseries(
            "Time since last successful poll",
            "Seconds since the last poll that reached Letta, per instance. The dashed line is the "
            f"LettaExporterPollingStale threshold ({POLL_STALE.text}).",
            "s",
            [
                target(
                    SINCE_LAST_POLL,
                    "{{instance}}",
                )
            ],
            w=8,
            threshold_line=POLL_STALE_ALERT,
        ),
        timeseries(
            "Poll duration p50 / p90 / p99",
            "How long one poll tick (list runs, track in-flight runs, enrich finished ones) takes. It "
            "should stay well under the poll interval.",
            "s",
            [
                target(quantile(0.5, "letta_exporter_poll_duration_seconds", SEL), "p50", "A"),
                target(quantile(0.9, "letta_exporter_poll_duration_seconds", SEL), "p90", "B"),
                target(quantile(0.99, "letta_exporter_poll_duration_seconds", SEL), "p99", "C"),
            ],
            w=8,
        ),
        timeseries(
            "Tracked and pending-enrichment runs",
            "Runs the exporter holds (in flight or awaiting enrichment) and, of those, finished runs "
            "whose usage, metrics or steps are still being read.",
            "short",
            [
                target(f"sum(letta_exporter_tracked_runs{{{SEL}}})", "tracked", "A"),
                target(f"sum(letta_exporter_pending_enrichment_runs{{{SEL}}})", "pending enrichment", "B"),
            ],
            w=8,
        ),
        timeseries(
            "Poll errors / s by phase",
            "Poll phases (discover, track, enrich) that failed after retries, per second.",
            "ops",
            [target(rate("letta_exporter_poll_errors_total", SEL, "phase"), "{{phase}}")],
            w=8,
        ),
        timeseries(
            "Enrichment failures, give-ups and lost runs",
            "Per second: enrichment reads that failed and will be retried (by source), runs recorded "
            "without a source after retries ran out, and runs deleted before their outcome was read.",
            "ops",
            [
                target(
                    rate("letta_exporter_enrichment_failures_total", SEL, "source"), "failed {{source}}", "A"
                ),
                target(
                    rate("letta_exporter_enrichment_given_up_total", SEL, "source"), "gave up {{source}}", "B"
                ),
                target(rate("letta_exporter_runs_lost_total", SEL), "runs lost", "C"),
            ],
            w=8,
        ),
        timeseries(
            "Where finished runs went",
            "Per second: finished runs the exporter took in to be recorded, the runs it recorded "
            "(letta_runs_total) and the runs it gave up, by reason. Taken in = recorded + lost, a "
            "moment later: never a silent zero (docs/servers.md).",
            "ops",
            [
                target(rate("letta_exporter_runs_finished_seen_total", SEL), "taken in", "A"),
                target(rate("letta_runs_total", SEL), "recorded", "B"),
                target(rate("letta_exporter_runs_lost_total", SEL, "reason"), "lost {{reason}}", "C"),
            ],
            w=8,
        ),
        stat(
            "Letta endpoints served",
            "Per optional Letta endpoint, as learnt from the server's answers: served, or missing (its "
            "figures come from their next source; the exporter's log says what is lost; "
            "LettaEndpointMissing fires). list_steps is the steps stream. docs/servers.md.",
            "none",
            [target(f"min by (endpoint) (letta_exporter_endpoint_available{{{SEL}}})", "{{endpoint}}")],
            w=8,
            steps=((None, "orange"), (1, "green")),
            color_mode="background",
            graph_mode="none",
            text_mode="value_and_name",
            mappings=value_map(("0", "orange", "missing"), ("1", "green", "served")),
        ),
        stat(
            "Recording",
            "letta_exporter_not_recording per instance: STALLED while finished runs have waited five "
            "polls in a row and none was recorded (the log names what they wait for; "
            "LettaExporterNotRecording fires), else OK.",
            "none",
            [target(f"max by (instance) (letta_exporter_not_recording{{{SEL}}})", "{{instance}}")],
            w=8,
            steps=((None, "green"), (1, "red")),
            color_mode="background",
            graph_mode="none",
            mappings=value_map(("0", "green", "OK"), ("1", "red", "STALLED")),
        ),
        timeseries(
            "Falling behind",
            "How long the longest-waiting finished run has waited to be recorded (left axis; 0 when "
            "none waits), and how many finished runs wait for an enrichment worker. A growing age "
            "means Letta finishes runs faster than the exporter can read them; the dashed line is "
            f"the LettaExporterFallingBehind threshold ({FALLING_BEHIND.text}).",
            "s",
            [
                target(
                    f"max by (instance) (letta_exporter_oldest_unrecorded_run_age_seconds{{{SEL}}})",
                    "oldest unrecorded {{instance}}",
                    "A",
                ),
            ],
            w=8,
            threshold_line=FALLING_BEHIND_ALERT,
        ),
        timeseries(
            "Enrichment queue",
            "Finished runs ready for an enrichment worker and waiting for one, per instance. It stays "
            "near 0 while the exporter keeps up; a standing queue says the workers or Letta's request "
            "rate are the limit.",
            "short",
            [target(f"sum by (instance) (letta_exporter_enrichment_queue_runs{{{SEL}}})", "{{instance}}")],
            w=8,
        ),
        timeseries(
            "Failed polls / s by reason",
            "Polls that could not reach Letta, by first cause (unauthorized: check LETTA_API_KEY; "
            "unreachable, timeout, rate_limited, server_error, malformed, paging, ...).",
            "ops",
            [target(rate("letta_exporter_poll_failures_total", SEL, "reason"), "{{reason}}")],
            w=8,
        ),
        row("Letta API"),
        timeseries(
            "API requests / s by endpoint and code",
            "Requests the exporter made to the Letta API per second, by endpoint and HTTP code ('timeout' "
            "and 'transport_error' when no HTTP answer came). 429s mean Letta is rate limiting us.",
            "reqps",
            [target(rate(api, SEL, "endpoint, code"), "{{endpoint}} {{code}}")],
            stack=True,
        ),
        timeseries(
            "API error ratio by endpoint",
            "Share of requests per endpoint that got a 5xx, another 4xx than 404 and 429, a timeout or "
            "a transport error. 404 is left out (traces can be unavailable and runs can be deleted), "
            "429 has its own panel. Reads 0 before the first error.",
            "percentunit",
            [target(ratio_or_zero('code!~"2..|404|429"', api, SEL, "endpoint"), "{{endpoint}}")],
            maximum=1,
        ),
        timeseries(
            "Rate-limited (429) requests / s by endpoint",
            "Requests answered 429 Too Many Requests, per second and endpoint. The exporter backs off "
            "and retries; sustained 429s mean its request budget is above Letta's limit "
            "(LettaApiRateLimited).",
            "reqps",
            [target(rate_or_zero(api, SEL + ', code="429"', "endpoint", api, SEL), "{{endpoint}}")],
        ),
        timeseries(
            "API request latency p95 by endpoint",
            "95th percentile latency of Letta API requests by endpoint, as the exporter measured it.",
            "s",
            [
                target(
                    quantile(0.95, "letta_exporter_api_request_duration_seconds", SEL, "endpoint"),
                    "{{endpoint}}",
                )
            ],
        ),
        timeseries(
            "Malformed API responses / s by endpoint",
            "Letta replies whose body could not be read as the expected JSON, per second. Non-zero usually "
            "means a Letta version the exporter does not know yet. Reads 0 before the first one.",
            "ops",
            [
                target(
                    rate_or_zero("letta_exporter_api_malformed_responses_total", SEL, "endpoint", api, SEL),
                    "{{endpoint}}",
                )
            ],
            w=24,
        ),
        row("Traces"),
        timeseries(
            "Spans exported / s by result",
            "OpenTelemetry spans the exporter sent per second, by result: success, failure (the OTLP "
            "endpoint refused or was unreachable) and dropped (the export queue was full).",
            "ops",
            [target(rate("letta_exporter_spans_exported_total", SEL, "result"), "{{result}}")],
        ),
        timeseries(
            "Span failure and drop ratio",
            "Share of spans that failed to export or were dropped. Anything above zero means missing "
            "traces; 0 while no spans are exported (trace export off).",
            "percentunit",
            [
                target(
                    ratio_or_zero(
                        'result=~"failure|dropped"',
                        "letta_exporter_spans_exported_total",
                        SEL,
                        "instance",
                        none_is_zero=True,
                    ),
                    "{{instance}}",
                )
            ],
            maximum=1,
        ),
        row("Process"),
        timeseries(
            "CPU",
            "CPU time the exporter process uses per second (1 = one full core).",
            "percentunit",
            [target(f"rate(process_cpu_seconds_total{{{SEL}}}[{RI}])", "{{instance}}")],
            w=8,
        ),
        timeseries(
            "Memory",
            "Resident memory of the exporter process.",
            "bytes",
            [target(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
            w=8,
        ),
        timeseries(
            "Open file descriptors",
            "File descriptors the exporter holds (sockets to Letta included), against its limit.",
            "short",
            [
                target(f"process_open_fds{{{SEL}}}", "open {{instance}}", "A"),
                target(f"process_max_fds{{{SEL}}}", "limit {{instance}}", "B"),
            ],
            w=8,
            legend_calcs=("lastNotNull",),
        ),
    ]
    return dashboard(
        HEALTH_UID,
        "Letta / Exporter health",
        "Is letta-exporter itself healthy: reaching Letta, polling on time, API errors and rate limiting, "
        "tracked runs, span export and the process.",
        job_instance_vars(),
        panels,
    )


DASHBOARDS = {
    "letta-runs-overview.json": overview,
    "letta-agent-detail.json": agent_detail,
    "letta-exporter-health.json": exporter_health,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args(argv)
    files = {HERE / name: render(build) for name, build in DASHBOARDS.items()}
    return write_or_check(files, check=args.check, command="python dashboards/generate.py")


if __name__ == "__main__":
    sys.exit(main())
