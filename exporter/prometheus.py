"""The Prometheus side: the exporter's metric families (declared in exporter/families.py) built as
prometheus-client objects beside the run totals, how runs are recorded in them, and the rendering of
them all that /metrics serves (docs/metrics.md)."""

from __future__ import annotations

import logging
import time
from collections import Counter as CounterOf
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from exporter import __version__, defaults
from exporter import families as f
from exporter.exposition import Exposition
from exporter.figures import listed_agent
from exporter.labels import AgentLabeler, enum_label, free_label
from exporter.letta.models import Run
from exporter.outcome import RunOutcome
from exporter.totals import RunTotals, TotalsText

log = logging.getLogger(__name__)
KINDS: dict[str, Any] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram, "info": Info}


def build(family: f.Family, registry: CollectorRegistry, agent_label: bool) -> Any:
    """The prometheus-client object for one of the exporter's own families."""
    extra = {"buckets": family.buckets} if family.kind == "histogram" else {}
    return KINDS[family.kind](family.name, family.help, family.label_names(agent_label), registry=registry,
                              **extra)  # fmt: skip


def _age(since: float | None) -> float:
    return max(0.0, time.time() - since) if since is not None else 0.0


class ExporterMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        agent_label: bool = defaults.AGENT_LABEL,
        max_agents: int = defaults.MAX_AGENTS,
        ttft_buckets: Sequence[float] = defaults.TTFT_BUCKETS,
        duration_buckets: Sequence[float] = defaults.DURATION_BUCKETS,
    ) -> None:
        # Series per run outcome already cost enough; the _created twins would double them for
        # nothing. prometheus-client keeps this switch process-wide.
        disable_created_metrics()
        self.registry = registry
        self.agent_label = agent_label
        self.agents = AgentLabeler(max_agents)
        self._initialised_agents: set[str] = set()
        buckets = {f.TTFT.name: tuple(ttft_buckets), f.DURATION.name: tuple(duration_buckets)}
        self.totals = RunTotals(buckets, agent_label=agent_label)
        self.exposition = Exposition(registry, extra=TotalsText(self.totals).render)
        # Each of the exporter's own families, built from its declaration, is the attribute named
        # after it (families.POLL_ERRORS: self.poll_errors), in the declarations' order.
        self.families: dict[str, Any] = {}
        for attribute, family in vars(f).items():
            if isinstance(family, f.Family) and not family.outcome:
                self.families[family.name] = build(family, registry, agent_label)
                setattr(self, attribute.lower(), self.families[family.name])
        self._active: CounterOf[tuple[str, ...]] = CounterOf()
        # Set by each poll; the scrape computes the ages from them, so they keep growing.
        self.oldest_active_created_at: float | None = None
        # When the longest-waiting finished run finished (admitted for enrichment, or left in Letta).
        self.oldest_unrecorded_finished_at: float | None = None
        self.active_max_age.set_function(lambda: _age(self.oldest_active_created_at))
        self.unrecorded_age.set_function(lambda: _age(self.oldest_unrecorded_finished_at))
        self.build_info.info({"version": __version__})
        self._lost_reasons_said: set[str] = set()
        self._cursor_labels: dict[str, tuple[str, str, str, str]] = {}
        self._zero((), per_agent=False)
        if not agent_label:
            self._zero((), per_agent=True)

    def agent(self, agent_id: str | None) -> tuple[str, ...]:
        """The agent part of a label set: empty when the agent label is off."""
        if not self.agent_label:
            return ()
        label = self.agents.label(agent_id)
        if label not in self._initialised_agents:
            self._initialised_agents.add(label)
            self._zero((label,), per_agent=True)
        return (label,)

    def _zero(self, agent: tuple[str, ...], *, per_agent: bool) -> None:
        """Create the series at zero of the families that are (or are not) per agent: once, or for
        each agent as it is seen (with the agent label off, once, without it)."""
        for family in f.FAMILIES:
            for values in family.zero if family.per_agent is per_agent else ():
                if family.outcome:
                    self.totals.touch(family, (*agent, *values))
                else:
                    self.families[family.name].labels(*agent, *values)

    def record(self, outcome: RunOutcome) -> None:
        """Record one finished run. Synchronous and exception-free by construction: called once."""
        self.totals.record(outcome, self.agent(outcome.agent_id))

    def set_active(self, runs: Iterable[Run]) -> None:
        """The runs in flight now, for letta_active_runs and the age of the oldest."""
        counts: CounterOf[tuple[str, ...]] = CounterOf()
        oldest: float | None = None
        for run in runs:
            counts[(*self.agent(listed_agent(run)), enum_label(run.status))] += 1
            if run.created_at is not None:
                created = run.created_at.timestamp()
                oldest = created if oldest is None else min(oldest, created)
        for labels in self._active.keys() - counts.keys():
            self.active_runs.labels(*labels).set(0)
        for labels, count in counts.items():
            self.active_runs.labels(*labels).set(count)
        self._active = counts
        self.oldest_active_created_at = oldest

    def lose(self, reason: str, detail: str) -> None:
        """A run seen but never to be recorded: counted once, and said in the log the first time its
        reason comes up (the next ones at debug, with the counter for the tally)."""
        self.runs_lost.labels(reason).inc()
        if reason in self._lost_reasons_said:
            log.debug("run not counted (%s): %s", reason, detail)
            return
        self._lost_reasons_said.add(reason)
        log.warning("run not counted (%s): %s; letta_exporter_runs_lost_total{reason=%r} counts "
                    "such runs from now on", reason, detail, str(reason))  # fmt: skip

    def endpoint_changed(self, endpoint: str, available: bool) -> None:
        self.endpoint_available.labels(endpoint).set(1 if available else 0)

    def observe_request(self, endpoint: str, code: str, seconds: float) -> None:
        self.api_requests.labels(endpoint, code).inc()
        self.api_latency.labels(endpoint).observe(seconds)

    def observe_malformed(self, endpoint: str) -> None:
        self.api_malformed.labels(endpoint).inc()

    def observe_cursor(self, endpoint: str, order: str, param: str, semantics: str) -> None:
        labels = (endpoint, order, param, semantics)
        previous = self._cursor_labels.get(endpoint)
        if previous is not None and previous != labels:
            self.list_cursors.remove(*previous)  # one series per list: the new answer replaces it
        self._cursor_labels[endpoint] = labels
        self.list_cursors.labels(*labels).set(1)

    def set_agent_names(self, names: dict[str, str]) -> None:
        for agent_id, name in names.items():  # IDs from ``agents.admitted``: each has its series
            self.agent_info.labels(agent_id).info({"agent_name": free_label(name)})

    def set_tool_names(self, names: dict[str, str]) -> None:
        for tool, name in names.items():
            self.tool_info.labels(tool).info({"tool_name": free_label(name)})

    def tools_used(self) -> list[str]:
        """Tool label values recorded so far (IDs, as Letta's run metrics report them)."""
        return [key[0] for key in self.totals.counters[f.TOOL_CALLS.name].copy()]
