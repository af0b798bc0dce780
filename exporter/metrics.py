"""The metric contract (README "Metrics"): the exporter's metrics, how runs are recorded in them, and
the rendering of them all that /metrics serves."""

from __future__ import annotations

import logging
import time
from collections import Counter as CounterOf
from collections.abc import Iterable, Sequence
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from exporter import __version__
from exporter.exposition import Exposition
from exporter.figures import TOKEN_TYPES, Source
from exporter.labels import NONE, AgentLabeler, enum_label, free_label
from exporter.letta.errors import FAILURE_REASONS
from exporter.letta.models import ACTIVE_STATUSES, Run
from exporter.outcome import RunOutcome
from exporter.totals import RunTotals, TotalsText

log = logging.getLogger(__name__)

# vLLM's TTFT buckets (1 ms .. 2560 s); LLM first tokens range from tens of ms to minutes.
DEFAULT_TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
# OpenTelemetry GenAI's gen_ai.invoke_agent.duration doubling from 0.1 s, carried on to ~55 min so a
# long agent loop does not pin p95 at the top bucket.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = tuple(round(0.1 * 2**k, 1) for k in range(16))
DEFAULT_STEP_BUCKETS: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 75, 100, 200)
API_LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
POLL_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# Status/stop-reason pairs Letta produces, pre-created at zero so rate() and absent() work from start.
EXPECTED_OUTCOMES: tuple[tuple[str, str], ...] = (
    ("completed", "end_turn"),
    ("completed", "max_steps"),
    ("completed", "no_tool_call"),
    ("completed", "tool_rule"),
    ("completed", "requires_approval"),
    ("completed", "max_tokens_exceeded"),
    ("failed", "error"),
    ("failed", "llm_api_error"),
    ("failed", "invalid_llm_response"),
    ("failed", "invalid_tool_call"),
    ("failed", "insufficient_credits"),
    ("failed", "context_window_overflow_in_system_prompt"),
    ("failed", NONE),
    ("cancelled", "cancelled"),
)

# Label values known before anything happens, pre-created at zero so panels read 0, not "no data".
POLL_PHASES = ("discover", "track", "steps", "enrich", "agent_names", "tool_names")
ENRICHMENT_SOURCES = tuple(source.value for source in Source if source is not Source.RUN)
GIVEN_UP_SOURCES = ENRICHMENT_SOURCES  # a full pending set defers runs to Letta: nothing is given up
# deleted: in Letta before it was recorded; stale: in flight past the age limit; malformed: listed
# without the created_at it needs to be placed.
LOST_REASONS = ("deleted", "stale", "malformed")
CALLBACK_OUTCOMES = ("success", "failure")
SPAN_RESULTS = ("success", "failure", "dropped")
SAVE_RESULTS = ("success", "failure")


def _age(since: float | None) -> float:
    return max(0.0, time.time() - since) if since is not None else 0.0


class ExporterMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        agent_label: bool = True,
        max_agents: int = 1000,
        ttft_buckets: Sequence[float] = DEFAULT_TTFT_BUCKETS,
        duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
    ) -> None:
        # Series per run outcome already cost enough; the _created twins would double them for
        # nothing. prometheus-client keeps this switch process-wide.
        disable_created_metrics()
        self.registry = registry
        self.agent_label = agent_label
        self.agents = AgentLabeler(max_agents)
        self._initialised_agents: set[str] = set()
        self.totals = RunTotals(
            {"ttft": tuple(ttft_buckets), "duration": tuple(duration_buckets), "steps": DEFAULT_STEP_BUCKETS},
            agent_label=agent_label,
        )
        self.exposition = Exposition(registry, extra=TotalsText(self.totals).render)

        counter, gauge = partial(Counter, registry=registry), partial(Gauge, registry=registry)
        histogram, info = partial(Histogram, registry=registry), partial(Info, registry=registry)
        self.active_runs = gauge(
            "letta_active_runs", "Runs in flight (created or running) at the last poll.",
            ["agent_id", "status"] if agent_label else ["status"],
        )  # fmt: skip
        self._active: CounterOf[tuple[str, ...]] = CounterOf()
        # Set by each poll; the scrape computes the ages from them, so they keep growing.
        self.oldest_active_created_at: float | None = None
        # When the longest-waiting finished run finished (admitted for enrichment, or left in Letta).
        self.oldest_unrecorded_finished_at: float | None = None
        self.active_max_age = gauge(
            "letta_active_run_max_age_seconds",
            "Age of the oldest run still in flight (0 when none): a growing value means a stuck run.",
        )
        self.active_max_age.set_function(lambda: _age(self.oldest_active_created_at))
        self.unrecorded_age = gauge(
            "letta_exporter_oldest_unrecorded_run_age_seconds",
            "Time since the longest-waiting finished run finished, while it is not yet recorded (0 "
            "when none waits): growing means the exporter is falling behind Letta.",
        )  # fmt: skip
        self.unrecorded_age.set_function(lambda: _age(self.oldest_unrecorded_finished_at))
        self.agent_info = info(
            "letta_agent", "Names, always 1; join with * on(agent_id) group_left(agent_name).", ["agent_id"]
        )
        self.tool_info = info(
            "letta_tool", "Names, always 1; join with * on(tool) group_left(tool_name).", ["tool"]
        )
        self.up = gauge("letta_exporter_up", "1 when the last poll reached Letta, else 0.")
        self.build_info = info("letta_exporter_build", "Exporter build.")
        self.build_info.info({"version": __version__})
        self.api_requests = counter(
            "letta_exporter_api_requests", "Requests to the Letta API by endpoint and HTTP code "
            "(or 'timeout' / 'transport_error' when no HTTP answer came).", ["endpoint", "code"],
        )  # fmt: skip
        self.api_latency = histogram(
            "letta_exporter_api_request_duration_seconds", "Latency of Letta API requests.", ["endpoint"],
            buckets=API_LATENCY_BUCKETS,
        )  # fmt: skip
        self.api_malformed = counter(
            "letta_exporter_api_malformed_responses",
            "Letta replies whose body could not be read.",
            ["endpoint"],
        )
        self.poll_duration = histogram(
            "letta_exporter_poll_duration_seconds", "Time one poll tick took.", buckets=POLL_BUCKETS
        )
        self.poll_errors = counter(
            "letta_exporter_poll_errors", "Poll phases that failed after retries.", ["phase"]
        )
        self.poll_failures = counter(
            "letta_exporter_poll_failures", "Polls that could not reach Letta, by the first cause: "
            "unauthorized (401/403: check LETTA_API_KEY), unreachable, timeout, rate_limited, "
            "server_error, client_error, malformed, paging (list cursors ignored) or internal.", ["reason"],
        )  # fmt: skip
        self.last_success = gauge(
            "letta_exporter_last_successful_poll_timestamp_seconds",
            "Unix time of the last poll that reached Letta.",
        )
        self.tracked = gauge(
            "letta_exporter_tracked_runs", "Runs the exporter holds: in flight or awaiting enrichment."
        )
        self.enrichment_queue = gauge(
            "letta_exporter_enrichment_queue_runs", "Finished runs ready for an enrichment worker and "
            "waiting for one (the rest of the pending ones wait for late data or a retry).",
        )  # fmt: skip
        self.pending = gauge(
            "letta_exporter_pending_enrichment_runs", "Finished runs whose enrichment is still being read."
        )
        self.enrichment_failures = counter(
            "letta_exporter_enrichment_failures",
            "Enrichment reads that failed and will be retried.",
            ["source"],
        )
        self.enrichment_given_up = counter(
            "letta_exporter_enrichment_given_up", "Runs recorded without a source after its retries ran out.",
            ["source"],
        )  # fmt: skip
        self.runs_lost = counter(
            "letta_exporter_runs_lost", "Runs seen but never recorded, each counted once: deleted in "
            "Letta, in flight past the age limit (stale), or listed unreadably (malformed).", ["reason"],
        )  # fmt: skip
        self._lost_reasons_said: set[str] = set()
        self.runs_finished_seen = counter(
            "letta_exporter_runs_finished_seen", "Finished runs taken in to be recorded (each once): "
            "with letta_runs_total and letta_exporter_runs_lost_total, where every one went.",
        )  # fmt: skip
        self.not_recording = gauge(
            "letta_exporter_not_recording", "1 while finished runs have waited several polls in a row "
            "and none was recorded (the log says why), else 0.",
        )  # fmt: skip
        self.endpoint_available = gauge(
            "letta_exporter_endpoint_available", "Whether Letta serves each optional endpoint the "
            "exporter reads (1) or lacks it (0: the figures it gave come from their next source), as "
            "learnt from its answers; list_steps is the steps stream.", ["endpoint"],
        )  # fmt: skip
        self.request_rate = gauge(
            "letta_exporter_request_rate_limit", "Requests per second the exporter allows itself to "
            "Letta now: grows while Letta answers without 429, halves on a 429 (0: no cap).",
        )  # fmt: skip
        self.list_cursors = gauge(
            "letta_exporter_list_cursor_info", "Which cursor parameter continues each Letta list, as "
            "learnt from the server's answers: semantics is spec (after= continues the sort order, as "
            "Letta Cloud) or reversed (as Letta 0.16.8's run list).",
            ["endpoint", "order", "parameter", "semantics"],
        )  # fmt: skip
        self._cursor_labels: dict[str, tuple[str, str, str, str]] = {}
        self.circuit_open = gauge(
            "letta_exporter_circuit_open", "1 while polls are paused because Letta keeps failing."
        )
        self.spans_exported = counter(
            "letta_exporter_spans_exported", "Trace spans by what became of them: success, failure "
            "(refused, or unreachable through the retries) or dropped (queue full, or still queued at "
            "shutdown).", ["result"],
        )  # fmt: skip
        self.state_saves = counter("letta_exporter_state_saves", "State file writes by result.", ["result"])
        self.state_load_failures = counter(
            "letta_exporter_state_load_failures", "State files that could not be read and were moved aside."
        )

        for family, values in (
            (self.poll_errors, POLL_PHASES),
            (self.poll_failures, FAILURE_REASONS),
            (self.enrichment_failures, ENRICHMENT_SOURCES),
            (self.enrichment_given_up, GIVEN_UP_SOURCES),
            (self.runs_lost, LOST_REASONS),
            (self.spans_exported, SPAN_RESULTS),
            (self.state_saves, SAVE_RESULTS),
        ):
            for value in values:
                family.labels(value)
        for outcome in CALLBACK_OUTCOMES:
            self.totals.touch("letta_run_callbacks", (outcome,))
        if not agent_label:
            self._touch_agent(())

    def agent(self, agent_id: str | None) -> tuple[str, ...]:
        """The agent part of a label set: empty when the agent label is off."""
        if not self.agent_label:
            return ()
        label = self.agents.label(agent_id)
        if label not in self._initialised_agents:
            self._initialised_agents.add(label)
            self._touch_agent((label,))
        return (label,)

    def _touch_agent(self, agent: tuple[str, ...]) -> None:
        for status, reason in EXPECTED_OUTCOMES:
            self.totals.touch("letta_runs", (*agent, status, reason))
        for token_type in TOKEN_TYPES:
            self.totals.touch("letta_run_tokens", (*agent, token_type))
        for status in ACTIVE_STATUSES:  # every agent counted reads 0 runs in flight, not nothing
            self.active_runs.labels(*agent, status)

    def record(self, outcome: RunOutcome) -> None:
        """Record one finished run. Synchronous and exception-free by construction: called once."""
        self.totals.record(outcome, self.agent(outcome.agent_id))

    def set_active(self, runs: Iterable[Run]) -> None:
        """The runs in flight now, for letta_active_runs and the age of the oldest."""
        counts: CounterOf[tuple[str, ...]] = CounterOf()
        oldest: float | None = None
        for run in runs:
            counts[(*self.agent(run.agent_id), enum_label(run.status))] += 1
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
                    "such runs from now on", reason, detail, reason)  # fmt: skip

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
        return [key[0] for key in self.totals.counters["letta_run_tool_calls"].copy()]
