"""The README's metric table and configuration table match what the code exposes."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import Settings, env_name, flag_name
from exporter.metrics import ExporterMetrics
from exporter.outcome import RunOutcome
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def readme_metric_rows() -> dict[str, tuple[str, frozenset[str]]]:
    section = README.split("<!-- metrics-table", 1)[1]
    rows = {}
    for line in section.splitlines()[3:]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = cells[0].strip("`")
        labels = frozenset(label.strip() for label in cells[2].split(",") if label.strip())
        rows[name] = (cells[1], labels)
    return rows


def exposed_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """Every family the exporter serves (its own, not process_/python_), with type and labels."""
    registry = CollectorRegistry()
    metrics = ExporterMetrics(registry)
    metrics.record(
        RunOutcome(
            run_id="run-1", agent_id="agent-1", status="completed", stop_reason="end_turn",
            ttft_seconds=0.5, duration_seconds=2.0, num_steps=2, run_tokens={"prompt": 5},
            step_tokens={("m", "prompt"): 5}, steps={("m", "success", "end_turn"): 2},
            tool_calls={"tool-1": 1}, callback="success",
        )
    )  # fmt: skip
    metrics.observe_request("list_runs", "200", 0.01)
    metrics.observe_malformed("list_runs")
    metrics.live.state.active = {("agent-1", "running"): 1}
    metrics.live.state.agent_names = {"agent-1": "bot"}
    for counter in (metrics.enrichment_failures, metrics.enrichment_given_up):
        counter.labels("steps").inc()
    metrics.runs_lost.inc()
    text = generate_latest(registry).decode()

    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    labels: dict[str, set[str]] = {name: set() for name in types}
    for name, label_text in re.findall(r"^(\w+)\{([^}]*)\}", text, re.MULTILINE):
        family = next(f for f in types if name == f or name.startswith(f + "_"))
        labels[family].update(re.findall(r'(\w+)="', label_text))
    exposed = {}
    for name, kind in types.items():
        if name.startswith(("letta_",)):
            public = f"{name}_total" if kind == "counter" and not name.endswith("_total") else name
            exposed[public] = (kind, frozenset(labels[name] - {"le"}))
    return exposed


def test_metric_table_matches_exposed_metrics() -> None:
    assert readme_metric_rows() == exposed_metrics()


def test_configuration_table_lists_every_setting() -> None:
    for name in Settings.model_fields:
        assert f"| `{env_name(name)}` | `{flag_name(name)}`" in README, name
