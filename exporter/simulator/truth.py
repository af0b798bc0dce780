"""Ground truth: what the simulator knows happened, for tests to compare the exporter against."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exporter.simulator.trace_store import TruthSpan


@dataclass(frozen=True)
class TruthStep:
    """A step row as the server finally holds it (on Letta 0.11 the last row of a run of several
    holds the run's cumulative usage, as that server's rows do)."""

    id: str
    model: str
    provider_name: str
    status: str
    stop_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    # Null in the API counts as 0 here, so sums over truth never need a None check.
    cached_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    trace_id: str | None
    # When the row was written (pending): what GET /v1/steps/ sorts by and filters with start_date and
    # end_date, though no step body shows it.
    created_at: datetime


@dataclass(frozen=True)
class TruthRun:
    """A terminal run as the generation serves it. ``stop_reason`` is the run's own (None where the
    run object shows none: always on Letta 0.11, whose stop reasons are on the steps)."""

    id: str
    agent_id: str
    status: str
    stop_reason: str | None
    created_at: datetime
    completed_at: datetime
    ttft_ns: int | None
    # Equals /metrics run_ns and the listed total_duration_ns; deliberately NOT completed_at - created_at.
    # None where the server records no duration (Letta 0.11's background and expired runs).
    total_duration_ns: int | None
    num_steps: int
    # As /v1/runs/{id}/metrics tells them: [] where the server has no such route (cloud, letta-0.11).
    tools_used: list[str]
    steps: list[TruthStep]
    callback_url: str | None
    callback_status_code: int | None
    callback_error: str | None
    # trace_mode "rows": what /trace serves for the run, as rows and as the spans they mean.
    trace_rows: tuple[dict[str, Any], ...] = ()
    trace_spans: tuple[TruthSpan, ...] = ()


USAGE_KEYS = (
    "runs",
    "steps",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "tool_calls",
)


@dataclass
class TruthTotals:
    """Running sums over every run that ever became terminal and visible, minus deleted ones.

    Pruning by retention does not touch these: that is what keeps a long benchmark checkable."""

    by_outcome: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    # The same, with the stop reason the run's step rows record (the last one that has one): what a
    # reader sees of a run whose own row has none (a 0.11 run, a 0.16.8 failed run).
    by_outcome_and_steps: Counter[tuple[str, str | None, str | None]] = field(default_factory=Counter)
    usage: Counter[str] = field(default_factory=Counter)

    def add(self, run: TruthRun, sign: int = 1) -> None:
        for counter, key in (
            (self.by_outcome, (run.status, run.stop_reason)),
            (self.by_outcome_and_steps, (run.status, run.stop_reason, _steps_stop_reason(run))),
        ):
            counter[key] += sign
            if counter[key] == 0:
                del counter[key]
        self.usage["runs"] += sign
        self.usage["steps"] += sign * run.num_steps
        self.usage["tool_calls"] += sign * len(run.tools_used)
        for step in run.steps:
            self.usage["prompt_tokens"] += sign * step.prompt_tokens
            self.usage["completion_tokens"] += sign * step.completion_tokens
            self.usage["cached_tokens"] += sign * step.cached_tokens
            self.usage["cache_read_tokens"] += sign * step.cache_read_tokens
            self.usage["cache_creation_tokens"] += sign * step.cache_creation_tokens
            self.usage["reasoning_tokens"] += sign * step.reasoning_tokens


def _steps_stop_reason(run: TruthRun) -> str | None:
    return next((step.stop_reason for step in reversed(run.steps) if step.stop_reason), None)
