"""The metric families are declared once (exporter/families.py) and what /metrics shows is built from
those declarations: every family in their order with its help and labels, and the series whose label
values are known in advance at zero from the start, so a dashboard panel shows 0 rather than "No
data". ``letta_active_runs`` reads 0 per status for every agent seen."""

from __future__ import annotations

import ast

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.families import FAMILIES, OUTCOME_FAMILIES
from exporter.letta.models import ACTIVE_STATUSES, Run
from exporter.prometheus import ExporterMetrics
from tests.support import ROOT, served_text

Series = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(metrics: ExporterMetrics) -> Series:
    """Sample name -> sorted label pairs -> value, as Prometheus would read them."""
    samples: Series = {}
    for family in text_string_to_metric_families(served_text(metrics)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.parametrize("agent_label", [True, False])
def test_the_exposition_is_the_declarations_in_their_order(agent_label: bool) -> None:
    metrics = ExporterMetrics(CollectorRegistry(), agent_label=agent_label)
    text = served_text(metrics)
    headers = [line for line in text.splitlines() if line.startswith("# ") and "letta_" in line]
    kinds = {"info": "gauge"}  # prometheus-client exposes an info family as a gauge
    assert headers == [
        line
        for family in FAMILIES
        for line in (
            f"# HELP {family.exposed} {family.help}",
            f"# TYPE {family.exposed} {kinds.get(family.kind, family.kind)}",
        )
    ]
    for family in FAMILIES:
        if not family.outcome:
            assert metrics.families[family.name]._labelnames == family.label_names(agent_label), family.name
        else:
            assert metrics.totals.labels_of(family) == family.label_names(agent_label)
        assert all(len(values) == len(family.labels) for values in family.zero), family.name


@pytest.mark.parametrize("agent_label", [True, False])
def test_label_values_known_in_advance_read_zero_from_the_start(agent_label: bool) -> None:
    """Per-agent families too, with the agent label off; with it on, once an agent is seen."""
    metrics = ExporterMetrics(CollectorRegistry(), agent_label=agent_label)
    if agent_label:
        metrics.agent("agent-1")
    samples = scrape(metrics)
    agent = (("agent_id", "agent-1"),) if agent_label else ()
    checked = 0
    for family in FAMILIES:
        if not family.zero:
            continue
        prefix = agent if family.per_agent else ()
        expected = {
            tuple(sorted((*prefix, *zip(family.labels, values, strict=True)))): 0.0 for values in family.zero
        }
        assert samples.get(family.exposed) == expected, family.name
        checked += 1
    assert checked >= 9
    assert samples["letta_exporter_poll_errors_total"][(("phase", "agent_names"),)] == 0.0


LABELLING_CALLS = {"labels", "lose", "_phase", "touch"}


def test_no_label_value_is_written_as_a_literal() -> None:
    """Label values come from the vocabularies the declarations create at zero (or from data: an
    endpoint, a status), never from a string written at the call: a new phase, source or reason
    in the code is then created at zero with nothing else to remember."""
    literals = []
    for path in (ROOT / "exporter").rglob("*.py"):
        if "simulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in LABELLING_CALLS:
                literals += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {arg.value!r}"
                    for arg in node.args
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                ]
    assert not literals


def test_outcome_families_are_the_declared_ones_the_totals_keep() -> None:
    metrics = ExporterMetrics(CollectorRegistry())
    kept = set(metrics.totals.counters) | set(metrics.totals.histograms)
    assert kept == {family.name for family in OUTCOME_FAMILIES}


def test_active_runs_read_zero_per_status_for_every_agent_seen() -> None:
    metrics = ExporterMetrics(CollectorRegistry())
    assert scrape(metrics).get("letta_active_runs") is None  # no agent seen yet: nothing to label
    metrics.agent("agent-1")
    metrics.agent("agent-2")
    metrics.set_active([Run(id="run-1", status="running", agent_id="agent-2") for _ in range(3)])
    active = scrape(metrics)["letta_active_runs"]
    expected = {
        (("agent_id", agent), ("status", status)): 0.0
        for agent in ("agent-1", "agent-2")
        for status in ACTIVE_STATUSES
    }
    expected[(("agent_id", "agent-2"), ("status", "running"))] = 3.0
    assert active == expected
    metrics.set_active([])  # they ended: back to 0, not gone
    assert set(scrape(metrics)["letta_active_runs"].values()) == {0.0}


def test_a_run_in_flight_on_letta_011_is_labelled_with_the_agent_its_metadata_names() -> None:
    """Letta 0.11's runs carry their agent only in metadata (a real 0.11.7 listed runs in flight so):
    the gauge takes it from there, not 'unknown'."""
    metrics = ExporterMetrics(CollectorRegistry())
    listed = Run.model_validate(
        {"id": "run-1", "status": "created", "metadata": {"job_type": "send_message", "agent_id": "agent-9"}}
    )
    metrics.set_active([listed])
    active = scrape(metrics)["letta_active_runs"]
    assert active[(("agent_id", "agent-9"), ("status", "created"))] == 1.0
    assert not any(("agent_id", "unknown") in labels for labels in active)


def test_active_runs_without_the_agent_label_read_zero_per_status_from_the_start() -> None:
    metrics = ExporterMetrics(CollectorRegistry(), agent_label=False)
    assert scrape(metrics)["letta_active_runs"] == {(("status", s),): 0.0 for s in ACTIVE_STATUSES}
    metrics.set_active([Run(id=f"run-{n}", status="created") for n in range(2)])
    assert scrape(metrics)["letta_active_runs"][(("status", "created"),)] == 2.0
