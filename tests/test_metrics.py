"""Series that exist from the start: counters whose label values are known in advance read 0 before
anything happens, and ``letta_active_runs`` reads 0 per status when nothing is in flight, so a
dashboard panel shows 0 rather than "No data"."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.enrichment import ENDPOINTS
from exporter.letta.models import ACTIVE_STATUSES, Run
from exporter.metrics import (
    CALLBACK_OUTCOMES,
    ENRICHMENT_SOURCES,
    GIVEN_UP_SOURCES,
    LOST_REASONS,
    POLL_PHASES,
    SAVE_RESULTS,
    SPAN_RESULTS,
    ExporterMetrics,
)
from tests.support import ROOT, served_text

# Counter attribute on ExporterMetrics -> (exposed name, label, values pre-created at zero).
KNOWN_IN_ADVANCE = {
    "poll_errors": ("letta_exporter_poll_errors_total", "phase", POLL_PHASES),
    "enrichment_failures": ("letta_exporter_enrichment_failures_total", "source", ENRICHMENT_SOURCES),
    "enrichment_given_up": ("letta_exporter_enrichment_given_up_total", "source", GIVEN_UP_SOURCES),
    "runs_lost": ("letta_exporter_runs_lost_total", "reason", LOST_REASONS),
    "callbacks": ("letta_run_callbacks_total", "outcome", CALLBACK_OUTCOMES),
    "spans_exported": ("letta_exporter_spans_exported_total", "result", SPAN_RESULTS),
    "state_saves": ("letta_exporter_state_saves_total", "result", SAVE_RESULTS),
}


def scrape(metrics: ExporterMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> sorted label pairs -> value, as Prometheus would read them."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(served_text(metrics)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.parametrize("agent_label", [True, False])
def test_counters_with_known_label_values_read_zero_from_the_start(agent_label: bool) -> None:
    samples = scrape(ExporterMetrics(CollectorRegistry(), agent_label=agent_label))
    for name, label, values in KNOWN_IN_ADVANCE.values():
        assert samples.get(name) == {((label, value),): 0.0 for value in values}, name
    assert samples["letta_exporter_poll_errors_total"][(("phase", "agent_names"),)] == 0.0


def _label_values_in_code() -> dict[str, set[str]]:
    """Label values the exporter's code passes to the counters above, as literals."""
    found: dict[str, set[str]] = {attr: set() for attr in KNOWN_IN_ADVANCE}
    for path in (ROOT / "exporter").rglob("*.py"):
        text = path.read_text()
        for attr, args in re.findall(r"\.(\w+)\.labels\(([^()]*)\)", text):
            # The trace pipeline is handed the spans counter as ``counter``.
            attr = "spans_exported" if (path.name, attr) == ("pipeline.py", "counter") else attr
            if attr in found:
                found[attr].update(re.findall(r"\"(\w+)\"", args))
        # The poller's phases name their label value once, where they run; so do lost runs' reasons.
        found["poll_errors"].update(re.findall(r"_phase\(\s*\"(\w+)\"", text))
        found["runs_lost"].update(re.findall(r"\.lose\(\s*\"(\w+)\"", text))
    # Enrichment reads are labelled by the source they read.
    sources = {source.value for source in ENDPOINTS}
    found["enrichment_failures"].update(sources)
    found["enrichment_given_up"].update(sources)
    figures = (ROOT / "exporter" / "figures.py").read_text()
    body = figures.split("def callback_outcome", 1)[1].split("\ndef ", 1)[0]
    found["callbacks"].update(re.findall(r"\"(\w+)\"", body))
    return found


def test_every_label_value_the_code_uses_is_created_at_zero() -> None:
    """A new phase, source or reason in the code must join the lists in exporter/metrics.py."""
    for attr, values in _label_values_in_code().items():
        name, _, known = KNOWN_IN_ADVANCE[attr]
        assert values, f"found no label values for {name} in the code: has the way they are passed changed?"
        assert values <= set(known), f"{name}: {sorted(values - set(known))} not created at zero"


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


def test_active_runs_without_the_agent_label_read_zero_per_status_from_the_start() -> None:
    metrics = ExporterMetrics(CollectorRegistry(), agent_label=False)
    assert scrape(metrics)["letta_active_runs"] == {(("status", s),): 0.0 for s in ACTIVE_STATUSES}
    metrics.set_active([Run(id=f"run-{n}", status="created") for n in range(2)])
    assert scrape(metrics)["letta_active_runs"][(("status", "created"),)] == 2.0
