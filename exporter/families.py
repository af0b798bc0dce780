"""Every metric family the exporter exposes, declared once, as data: name, kind, help, labels, the
label values whose series exist at zero from the start (so ``rate()`` and ``absent()`` work, and
panels read 0, before the first event), buckets. exporter/prometheus.py builds the exporter's own
families from these; exporter/totals.py keeps, renders and saves the run-outcome ones. The metric
table of docs/metrics.md and the dashboards' name checks are tested against this list, so adding a
family is its declaration here plus its computation (docs/architecture.md, "Where to change what").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from exporter import defaults
from exporter.figures import TOKEN_TYPES, Callback, Source
from exporter.labels import NONE
from exporter.letta.errors import FAILURE_REASONS
from exporter.letta.models import ACTIVE_STATUSES

AGENT = "agent_id"


# Vocabularies of label values no module below this one owns; a member's value is its name in lower
# case (Phase.AGENT_NAMES is "agent_names").
# letta_exporter_poll_errors_total{phase}: a poll's phases in the order it runs them, and the
# enrichment workers' unexpected errors (enrich).
Phase = StrEnum("Phase", "DISCOVER TRACK STEPS ENRICH AGENT_NAMES TOOL_NAMES")
# letta_exporter_runs_lost_total{reason}: deleted in Letta before it was recorded, stale (in flight past
# the age limit), malformed (listed without the created_at it needs to be placed).
Lost = StrEnum("Lost", "DELETED STALE MALFORMED")
# What became of a span (all three) or a state file write (success, failure).
Result = StrEnum("Result", "SUCCESS FAILURE DROPPED")

# Status/stop-reason pairs Letta produces, at zero for every agent seen.
EXPECTED_OUTCOMES: tuple[tuple[str, str], ...] = (
    ("completed", "end_turn"), ("completed", "max_steps"), ("completed", "no_tool_call"),
    ("completed", "tool_rule"), ("completed", "requires_approval"), ("completed", "max_tokens_exceeded"),
    ("failed", "error"), ("failed", "llm_api_error"), ("failed", "invalid_llm_response"),
    ("failed", "invalid_tool_call"), ("failed", "insufficient_credits"),
    ("failed", "context_window_overflow_in_system_prompt"), ("failed", NONE), ("cancelled", "cancelled"),
)  # fmt: skip
# What enrichment reads a run's figures from (both enrichment counters): every source but the listing.
ENRICHMENT_SOURCES = tuple(source.value for source in Source if source is not Source.RUN)


def each(values: Iterable[object]) -> tuple[tuple[str, ...], ...]:
    """One-label zero series, one per value."""
    return tuple((str(value),) for value in values)


@dataclass(frozen=True)
class Family:
    name: str  # as prometheus-client takes it: a counter's _total and an info's _info are added
    kind: Literal["counter", "gauge", "histogram", "info"]
    help: str
    labels: tuple[str, ...] = ()  # after agent_id, for a per-agent family
    per_agent: bool = False  # agent_id leads, unless LETTA_EXPORTER_AGENT_LABEL=false drops it
    zero: tuple[tuple[str, ...], ...] = ()  # label values at zero from the start (per agent seen)
    buckets: tuple[float, ...] = ()  # a histogram's; the settings may give the TTFT and duration ones
    info: tuple[str, ...] = ()  # an info family's keys, exposed as labels
    outcome: bool = False  # a run-outcome family: exporter/totals.py keeps, renders and saves it

    @property
    def exposed(self) -> str:
        return self.name + {"counter": "_total", "info": "_info"}.get(self.kind, "")

    def label_names(self, agent_label: bool = True) -> tuple[str, ...]:
        return ((AGENT,) if self.per_agent and agent_label else ()) + self.labels


def _declare(kind: Literal["counter", "gauge", "histogram", "info"]) -> Callable[..., Family]:
    def declare(name: str, help: str, *labels: str, **more: Any) -> Family:
        return Family(name, kind, help, labels, **more)

    return declare


counter, gauge, histogram, info = map(_declare, ("counter", "gauge", "histogram", "info"))

# Declared in the order /metrics shows them (FAMILIES below keeps it): the exporter's own, as
# prometheus-client renders its registry, then the run outcomes. Each of the exporter's own is the
# ExporterMetrics attribute of its name here, lowercased (POLL_ERRORS: metrics.poll_errors).
ACTIVE_RUNS = gauge("letta_active_runs", "Runs in flight (created or running) at the last poll.", "status",
    per_agent=True, zero=each(ACTIVE_STATUSES))  # fmt: skip
ACTIVE_MAX_AGE = gauge("letta_active_run_max_age_seconds", "Age of the oldest run still in flight (0 when "
    "none): a growing value means a stuck run.")  # fmt: skip
UNRECORDED_AGE = gauge("letta_exporter_oldest_unrecorded_run_age_seconds", "Time since the longest-waiting "
    "finished run finished, while it is not yet recorded (0 when none waits): growing means the exporter "
    "is falling behind Letta.")  # fmt: skip
AGENT_INFO = info("letta_agent", "Names, always 1; join with * on(agent_id) group_left(agent_name).", AGENT,
    info=("agent_name",))  # fmt: skip
TOOL_INFO = info("letta_tool", "Names, always 1; join with * on(tool) group_left(tool_name).", "tool",
    info=("tool_name",))  # fmt: skip
UP = gauge("letta_exporter_up", "1 when the last poll reached Letta, else 0.")
BUILD_INFO = info("letta_exporter_build", "Exporter build.", info=("version",))
API_REQUESTS = counter("letta_exporter_api_requests", "Requests to the Letta API by endpoint and HTTP code "
    "(or 'timeout' / 'transport_error' when no HTTP answer came).", "endpoint", "code")  # fmt: skip
API_LATENCY = histogram("letta_exporter_api_request_duration_seconds", "Latency of Letta API requests.",
    "endpoint", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))  # fmt: skip
API_MALFORMED = counter("letta_exporter_api_malformed_responses", "Letta replies whose body could not be "
    "read.", "endpoint")  # fmt: skip
POLL_DURATION = histogram("letta_exporter_poll_duration_seconds", "Time one poll tick took.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))  # fmt: skip
POLL_ERRORS = counter("letta_exporter_poll_errors", "Poll phases that failed after retries.", "phase",
    zero=each(Phase))  # fmt: skip
POLL_FAILURES = counter("letta_exporter_poll_failures", "Polls that could not reach Letta, by the first "
    "cause: unauthorized (401/403: check LETTA_API_KEY), unreachable, timeout, rate_limited, server_error, "
    "client_error, malformed, paging (list cursors ignored) or internal.", "reason",
    zero=each(FAILURE_REASONS))  # fmt: skip
LAST_SUCCESS = gauge("letta_exporter_last_successful_poll_timestamp_seconds", "Unix time of the last poll "
    "that reached Letta.")  # fmt: skip
TRACKED = gauge("letta_exporter_tracked_runs", "Runs the exporter holds: in flight or awaiting enrichment.")
ENRICHMENT_QUEUE = gauge("letta_exporter_enrichment_queue_runs", "Finished runs ready for an enrichment "
    "worker and waiting for one (the rest of the pending ones wait for late data or a retry).")  # fmt: skip
PENDING = gauge("letta_exporter_pending_enrichment_runs", "Finished runs whose enrichment is still being "
    "read.")  # fmt: skip
ENRICHMENT_FAILURES = counter("letta_exporter_enrichment_failures", "Enrichment reads that failed and will "
    "be retried.", "source", zero=each(ENRICHMENT_SOURCES))  # fmt: skip
ENRICHMENT_GIVEN_UP = counter("letta_exporter_enrichment_given_up", "Runs recorded without a source after "
    "its retries ran out.", "source", zero=each(ENRICHMENT_SOURCES))  # fmt: skip
RUNS_LOST = counter("letta_exporter_runs_lost", "Runs seen but never recorded, each counted once: deleted "
    "in Letta, in flight past the age limit (stale), or listed unreadably (malformed).", "reason",
    zero=each(Lost))  # fmt: skip
RUNS_FINISHED_SEEN = counter("letta_exporter_runs_finished_seen", "Finished runs taken in to be recorded "
    "(each once): with letta_runs_total and letta_exporter_runs_lost_total, where every one "
    "went.")  # fmt: skip
NOT_RECORDING = gauge("letta_exporter_not_recording", "1 while finished runs have waited several polls in "
    "a row and none was recorded (the log says why), else 0.")  # fmt: skip
ENDPOINT_AVAILABLE = gauge("letta_exporter_endpoint_available", "Whether Letta serves each optional "
    "endpoint the exporter reads (1) or lacks it (0: the figures it gave come from their next source), as "
    "learnt from its answers; list_steps is the steps stream.", "endpoint")  # fmt: skip
REQUEST_RATE = gauge("letta_exporter_request_rate_limit", "Requests per second the exporter allows itself "
    "to Letta now: grows while Letta answers without 429, halves on a 429 (0: no cap).")  # fmt: skip
LIST_CURSORS = gauge("letta_exporter_list_cursor_info", "Which cursor parameter continues each Letta list, "
    "as learnt from the server's answers: semantics is spec (after= continues the sort order, as Letta "
    "Cloud) or reversed (as Letta 0.16.8's run list).", "endpoint", "order", "parameter",
    "semantics")  # fmt: skip
CIRCUIT_OPEN = gauge("letta_exporter_circuit_open", "1 while polls are paused because Letta keeps failing.")
SPANS_EXPORTED = counter("letta_exporter_spans_exported", "Trace spans by what became of them: success, "
    "failure (refused, or unreachable through the retries) or dropped (queue full, or still queued at "
    "shutdown).", "result", zero=each(Result))  # fmt: skip
STATE_SAVES = counter("letta_exporter_state_saves", "State file writes by result.", "result",
    zero=each((Result.SUCCESS, Result.FAILURE)))  # fmt: skip
STATE_LOAD_FAILURES = counter("letta_exporter_state_load_failures", "State files that could not be read "
    "and were moved aside.")  # fmt: skip

RUNS = counter("letta_runs", "Finished runs by outcome, each counted once.", "status", "stop_reason",
    per_agent=True, zero=EXPECTED_OUTCOMES, outcome=True)  # fmt: skip
TTFT = histogram("letta_run_ttft_seconds", "Time to first token of finished runs that report one.",
    per_agent=True, buckets=defaults.TTFT_BUCKETS, outcome=True)  # fmt: skip
DURATION = histogram("letta_run_duration_seconds", "Wall time of finished runs.", "status", per_agent=True,
    buckets=defaults.DURATION_BUCKETS, outcome=True)  # fmt: skip
STEPS = histogram("letta_run_steps", "Agent steps per finished run.", per_agent=True, outcome=True,
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 75, 100, 200))  # fmt: skip
RUN_TOKENS = counter("letta_run_tokens", "Tokens used by finished runs, by type.", "type", per_agent=True,
    zero=each(TOKEN_TYPES), outcome=True)  # fmt: skip
STEP_TOKENS = counter("letta_step_tokens", "Tokens used by the steps of finished runs, by model and type.",
    "model", "type", outcome=True)  # fmt: skip
STEP_COUNTS = counter("letta_steps", "Steps of finished runs by model, step status and stop reason.", "model",
    "status", "stop_reason", outcome=True)  # fmt: skip
TOOL_CALLS = counter("letta_run_tool_calls", "Tools used by finished runs, by tool ID (names in "
    "letta_tool_info).", "tool", outcome=True)  # fmt: skip
CALLBACKS = counter("letta_run_callbacks", "Run completion callbacks by outcome.", "outcome",
    zero=each(Callback), outcome=True)  # fmt: skip
# New families rather than labels on the token families: a state file keeps each family's label sets,
# so one written before would no longer load.
COST = counter("letta_run_cost_usd", "Estimated cost of finished runs in US dollars, by agent, model and "
    "provider (docs/cost.md).", "model", "provider", per_agent=True, outcome=True)  # fmt: skip
UNPRICED = counter("letta_unpriced_tokens", "Tokens of finished runs' steps whose model has no price (not "
    "in letta_run_cost_usd_total), by model and type.", "model", "type", outcome=True)  # fmt: skip

FAMILIES = tuple(value for value in list(globals().values()) if isinstance(value, Family))
OUTCOME_FAMILIES = tuple(family for family in FAMILIES if family.outcome)
