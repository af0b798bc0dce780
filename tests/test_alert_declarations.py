"""The alerts are declared once (exporter/rules/alerts.py) and everything that states a threshold is
made from that declaration: the rules file, the dashboards and the alert tables of the docs.

Fast tier: the generators run in-process; promtool runs the unit tests in tests/test_rules.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from exporter.rules import alerts, recording, ruleset, tables
from exporter.rules.declare import Alert, Threshold, placeholders
from tests.support import ROOT


def load_script(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_threshold(name: str, key: str, value: float) -> tuple[Alert, ...]:
    """The declarations with one threshold changed."""
    out = []
    for declared in alerts.ALERTS:
        if declared.name == name:
            changed = dataclasses.replace(declared.thresholds[key], value=value)
            declared = dataclasses.replace(declared, thresholds={**declared.thresholds, key: changed})
        out.append(declared)
    return tuple(out)


def panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in dashboard["panels"] if p.get("title") == title)


def steps(p: dict[str, Any]) -> list[float | None]:
    return [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_committed_files_are_what_the_declarations_generate() -> None:
    """rules/letta-exporter.rules.yml, the SLO rules and the docs' alert tables: regenerating them
    gives the committed files."""
    generate = load_script(ROOT / "rules" / "generate.py", "rules_generate")
    outputs = generate.outputs()
    assert {"rules/letta-exporter.rules.yml", "docs/dashboards.md"} <= set(outputs)
    for name, text in outputs.items():
        assert (ROOT / name).read_text(encoding="utf-8") == text, (
            f"{name} differs from what its declaration generates: run python rules/generate.py"
        )


def test_a_threshold_changed_in_its_declaration_changes_the_rule_the_dashboard_and_the_docs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alerts, "ALERTS", with_threshold("LettaRunTTFTHigh", "p95", 12.5))

    # The rule: its expression and annotations, and the rules file's header table.
    text = ruleset.render(alerts.ALERTS, recording.RECORDS)
    rule = next(
        r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if r.get("alert") == "LettaRunTTFTHigh"
    )
    assert rule["expr"] == "letta:run_ttft_seconds:p95_rate5m > 12.5"
    assert "above 12.5s for 15 minutes" in rule["annotations"]["description"]
    header = text.split("groups:")[0]
    assert re.search(r"LettaRunTTFTHigh .*above 12\.5s", header)

    # The docs' table.
    row = next(line for line in tables.markdown_table(alerts.ALERTS).splitlines() if "TTFTHigh" in line)
    assert "12.5s" in row and "10s" not in row, row

    # The dashboards: the generator reads the declaration when it is loaded.
    generate = load_script(ROOT / "dashboards" / "generate.py", "dashboards_generate_changed")
    overview = json.loads(generate.render(generate.DASHBOARDS["letta-runs-overview.json"]))
    stat = panel(overview, "TTFT p95")
    assert steps(stat) == [None, 6.25, 12.5]
    assert "(12.5s)" in stat["description"]
    line = panel(overview, "Time to first token p50 / p90 / p99")
    assert steps(line) == [None, 12.5]


def test_the_dashboards_draw_the_declared_thresholds() -> None:
    """The committed dashboards, read back: each threshold line or colour step the alerts name is the
    declared value (so a hand-edited JSON or a stale generator shows up here)."""
    overview = json.loads((ROOT / "dashboards" / "letta-runs-overview.json").read_text())
    health = json.loads((ROOT / "dashboards" / "letta-exporter-health.json").read_text())
    ratio = alerts.threshold("LettaRunFailureRatioHigh", "ratio").value
    assert steps(panel(overview, "Failure ratio"))[-1] == ratio
    assert steps(panel(overview, "Failure and cancellation ratio"))[-1] == ratio
    assert steps(panel(overview, "TTFT p95"))[-1] == alerts.threshold("LettaRunTTFTHigh", "p95").value
    stuck = alerts.threshold("LettaRunsStuck", "age").value
    assert steps(panel(overview, "Oldest active run"))[-1] == stuck
    assert steps(panel(overview, "Age of the oldest active run"))[-1] == stuck
    stale = alerts.threshold("LettaExporterPollingStale", "age").value
    assert steps(panel(health, "Since last successful poll"))[-1] == stale
    assert steps(panel(health, "Time since last successful poll"))[-1] == stale
    behind = alerts.threshold("LettaExporterFallingBehind", "age").value
    assert steps(panel(health, "Falling behind"))[-1] == behind
    budget = alerts.threshold("LettaSpendOverBudget", "budget").value
    detail = json.loads((ROOT / "dashboards" / "letta-agent-detail.json").read_text())
    for dashboard in (overview, detail):
        assert steps(panel(dashboard, "Spend per day at the current rate")) == [None, budget / 2, budget]


def test_an_alert_is_added_by_one_declaration_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    added = Alert(
        name="LettaExampleHigh",
        severity="warning",
        for_seconds=600,
        thresholds={"ratio": Threshold(0.2, "ratio")},
        expr="letta:example:ratio_rate5m > ${ratio}",
        summary="Example {{ $value | humanizePercentage }}.",
        description="Example above ${ratio} for ${for} (job {{ $labels.job }}).",
        fires_when="the example ratio is above ${ratio}",
    )
    monkeypatch.setattr(alerts, "ALERTS", (*alerts.ALERTS, added))
    text = ruleset.render(alerts.ALERTS, recording.RECORDS)
    rule = next(r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if r.get("alert") == added.name)
    assert rule == {
        "alert": "LettaExampleHigh",
        "expr": "letta:example:ratio_rate5m > 0.2",
        "for": "10m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Example {{ $value | humanizePercentage }}.",
            "description": "Example above 20% for 10 minutes (job {{ $labels.job }}).",
        },
    }
    assert "LettaExampleHigh" in text.split("groups:")[0]
    assert "| LettaExampleHigh | warning | the example ratio is above 20% | 10m |" in tables.markdown_table(
        alerts.ALERTS
    )


def test_every_threshold_is_in_its_alerts_expression() -> None:
    """A threshold only the prose mentions would be a number the rule does not check."""
    for declared in alerts.ALERTS:
        assert placeholders(declared.expr) == set(declared.thresholds), declared.name
        for text in (declared.summary, declared.description, declared.fires_when):
            assert placeholders(text) <= set(declared.thresholds) | {"for"}, declared.name


def test_threshold_texts() -> None:
    assert Threshold(0.05, "ratio").text == "5%" and Threshold(0.05, "ratio").promql == "0.05"
    assert Threshold(0.005, "ratio").text == "0.5%"
    assert Threshold(300, "seconds").text == "5m"
    assert Threshold(5400, "seconds").text == "1h30m"
    assert Threshold(12.5, "seconds").text == "12.5s"
    assert Threshold(10, "runs").text == "10" and Threshold(10, "runs").promql == "10"
    assert Threshold(100, "usd").text == "$100" and Threshold(2.5, "usd").promql == "2.5"


def test_the_rules_file_keeps_its_alerts_and_recording_rules() -> None:
    """What users rely on, pinned independently of the generator: every rule name, and the alert
    expressions as they were before the rules were declared as data (the thresholds included)."""
    rules = {
        r.get("record") or r.get("alert"): r
        for g in yaml.safe_load((ROOT / "rules" / "letta-exporter.rules.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert rules["LettaRunFailureRatioHigh"]["expr"].split("\n")[0] == "letta:runs_failed:ratio_rate5m > 0.1"
    assert "* 300 >= 10" in rules["LettaRunFailureRatioHigh"]["expr"]
    assert rules["LettaApiErrorsHigh"]["expr"] == "letta_instance:exporter_api_errors:ratio_rate5m > 0.05"
    assert (
        rules["LettaApiRateLimited"]["expr"] == "letta_instance:exporter_api_rate_limited:ratio_rate5m > 0.01"
    )
    assert rules["LettaRunTTFTHigh"]["expr"] == "letta:run_ttft_seconds:p95_rate5m > 10"
    assert rules["LettaRunsStuck"]["expr"] == "letta_active_run_max_age_seconds > 1800"
    assert rules["LettaExporterFallingBehind"]["expr"].endswith("> 300")
    assert "> 300)" in rules["LettaExporterPollingStale"]["expr"]
    assert rules["letta:run_ttft_seconds_bucket:rate5m"]["expr"] == (
        "sum by (job, le) (rate(letta_run_ttft_seconds_bucket[5m]))"
    )
    assert len([name for name in rules if ":" in name]) == 26
