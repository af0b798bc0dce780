"""The README's metric table and configuration table match what the code exposes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from exporter.config import Settings, env_name, flag_name
from exporter.metrics import ExporterMetrics
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
    exposed: dict[str, tuple[str, frozenset[str]]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            kind = "gauge" if metric._type == "info" else metric._type
            name = f"{metric._name}_total" if kind == "counter" else metric._name
            name = f"{name}_info" if metric._type == "info" else name
            labels = set(metric._labelnames) | ({"version"} if metric._type == "info" else set())
            exposed[name] = (kind, frozenset(labels))
    metrics.live.state.active = {("agent-1", "running"): 1}
    metrics.live.state.agent_names = {"agent-1": "bot"}
    for family in metrics.live.collect():
        labels = {key for sample in family.samples for key in sample.labels}
        exposed[family.name] = (family.type, frozenset(labels))
    return exposed


def test_metric_table_matches_exposed_metrics() -> None:
    assert readme_metric_rows() == exposed_metrics()


def test_configuration_table_lists_every_setting() -> None:
    for name in Settings.model_fields:
        assert f"| `{env_name(name)}` | `{flag_name(name)}`" in README, name
