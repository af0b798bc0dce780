"""What one finished run contributes to the metrics, computed in full before anything is recorded.

Finalising a run is all-or-nothing: every figure is worked out here, as plain data, and only then
handed to the recorder in one synchronous call. An exception half-way therefore leaves no counter
incremented that a retry would increment again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exporter.labels import enum_label, free_label
from exporter.letta.models import Run, RunMetrics, Step, UsageStatistics

TOKEN_TYPES = ("prompt", "completion", "cached", "cache_read", "cache_creation", "reasoning")
# Token types that count some of the same tokens, so a sum over ``type`` must never include both of a
# pair: cached, cache_read and cache_creation are parts of prompt (Letta counts cache reads and writes
# into prompt_tokens), reasoning is part of completion, and cached and cache_read are two names for
# the same cache reads (Letta fills both from one figure; older releases one or the other by provider).
OVERLAPPING_TOKEN_TYPES = frozenset(
    frozenset(pair)
    for pair in (
        ("prompt", "cached"),
        ("prompt", "cache_read"),
        ("prompt", "cache_creation"),
        ("completion", "reasoning"),
        ("cached", "cache_read"),
    )
)
NS_PER_SECOND = 1e9


@dataclass
class Enrichment:
    """The per-run sources read so far; ``None`` means not read (switched off, or not yet)."""

    usage: UsageStatistics | None = None
    run_metrics: RunMetrics | None = None  # Letta's /v1/runs/{id}/metrics
    steps: list[Step] | None = None
    # /trace rows (ClickHouse otel_traces columns); [] when Letta has no trace for the run, None when
    # not read (switched off, no trace storage, or not yet).
    trace_rows: list[dict[str, Any]] | None = None
    ttft_ns_from_trace: int | None = None


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    agent_id: str | None
    status: str
    stop_reason: str
    ttft_seconds: float | None
    duration_seconds: float | None
    num_steps: int | None
    run_tokens: dict[str, int] = field(default_factory=dict)
    step_tokens: dict[tuple[str, str], int] = field(default_factory=dict)
    steps: dict[tuple[str, str, str], int] = field(default_factory=dict)
    tool_calls: dict[str, int] = field(default_factory=dict)
    callback: str | None = None


def duration_ns(run: Run, metrics: RunMetrics | None) -> int | None:
    """``total_duration_ns``, else ``/metrics`` ``run_ns``; ``None`` while Letta has written neither."""
    if run.total_duration_ns is not None:
        return run.total_duration_ns
    if metrics is not None and metrics.run_ns is not None:
        return metrics.run_ns
    return None


def ttft_ns(run: Run, enrichment: Enrichment) -> int | None:
    """The run's own ``ttft_ns``, else the one its trace's time_to_first_token span gives."""
    return run.ttft_ns if run.ttft_ns is not None else enrichment.ttft_ns_from_trace


def has_settled(run: Run, enrichment: Enrichment) -> bool:
    """Letta can list a run as terminal a moment before it writes the run's duration; such a run is
    worth another look on the next tick before falling back to the wall-clock difference."""
    return duration_ns(run, enrichment.run_metrics) is not None


def _wall_clock_seconds(run: Run) -> float | None:
    if run.created_at is None or run.completed_at is None:
        return None
    seconds = (run.completed_at - run.created_at).total_seconds()
    return seconds if seconds >= 0 else None


def _usage_tokens(usage: UsageStatistics | Step) -> dict[str, int]:
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return {
        "prompt": usage.prompt_tokens or 0,
        "completion": usage.completion_tokens or 0,
        "cached": (prompt_details.cached_tokens if prompt_details else None) or 0,
        "cache_read": (prompt_details.cache_read_tokens if prompt_details else None) or 0,
        "cache_creation": (prompt_details.cache_creation_tokens if prompt_details else None) or 0,
        "reasoning": (completion_details.reasoning_tokens if completion_details else None) or 0,
    }


def step_tokens(step: Step) -> dict[str, int]:
    """A step's tokens by type: as /usage gives them, where the ``*_details`` objects are empty
    from the flat fields, since Letta fills one or the other."""
    tokens = _usage_tokens(step)
    tokens["cached"] = tokens["cached"] or step.cached_input_tokens or 0
    tokens["cache_creation"] = tokens["cache_creation"] or step.cache_write_tokens or 0
    tokens["reasoning"] = tokens["reasoning"] or step.reasoning_tokens or 0
    return tokens


def _callback_outcome(run: Run) -> str | None:
    if not run.callback_url:
        return None
    if run.callback_error:
        return "failure"
    if run.callback_status_code is not None:
        return "success" if 200 <= run.callback_status_code < 300 else "failure"
    return None


def compute_outcome(run: Run, enrichment: Enrichment) -> RunOutcome:
    run_metrics = enrichment.run_metrics
    steps = enrichment.steps

    ns = duration_ns(run, run_metrics)
    duration = ns / NS_PER_SECOND if ns is not None else _wall_clock_seconds(run)

    first_token_ns = ttft_ns(run, enrichment)
    ttft = first_token_ns / NS_PER_SECOND if first_token_ns is not None else None

    num_steps: int | None = None
    if run_metrics is not None and run_metrics.num_steps is not None:
        num_steps = run_metrics.num_steps
    elif steps is not None:
        num_steps = len(steps)

    run_tokens: dict[str, int] = {}
    step_token_totals: Counter[tuple[str, str]] = Counter()
    step_counts: Counter[tuple[str, str, str]] = Counter()
    if steps is not None:
        per_run: Counter[str] = Counter()
        for step in steps:
            model = free_label(step.model_label)
            for token_type, count in step_tokens(step).items():
                per_run[token_type] += count
                if count:
                    step_token_totals[(model, token_type)] += count
            step_counts[(model, enum_label(step.status), enum_label(step.stop_reason))] += 1
        run_tokens = {token_type: per_run[token_type] for token_type in TOKEN_TYPES}
    # /usage, where read, is Letta's own sum and wins over the sum of the steps.
    if enrichment.usage is not None:
        run_tokens = _usage_tokens(enrichment.usage)

    tools_used = run_metrics.tools_used if run_metrics is not None else None
    tools = Counter(free_label(tool) for tool in tools_used or ())

    return RunOutcome(
        run_id=run.id,
        agent_id=run.agent_id,
        status=enum_label(run.status),
        stop_reason=enum_label(run.stop_reason),
        ttft_seconds=ttft,
        duration_seconds=duration,
        num_steps=num_steps,
        run_tokens=run_tokens,
        step_tokens=dict(step_token_totals),
        steps=dict(step_counts),
        tool_calls=dict(tools),
        callback=_callback_outcome(run),
    )
