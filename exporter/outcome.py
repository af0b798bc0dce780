"""What one finished run contributes to the metrics, computed in full before anything is recorded.

Finalising a run is all-or-nothing: every figure is resolved (exporter/figures.py) and turned into
label values here, as plain data, and only then handed to the recorder in one synchronous call. An
exception half-way therefore leaves no counter incremented that a retry would increment again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.figures import step_tokens
from exporter.labels import enum_label, free_label
from exporter.letta.models import Run, Step

if TYPE_CHECKING:  # the price table is read only where runs are priced
    from exporter.cost.pricing import Pricing

NS_PER_SECOND = 1e9


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
    cost_usd: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, provider)
    unpriced_tokens: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, type)


def _seconds(ns: int | None) -> float | None:
    return ns / NS_PER_SECOND if ns is not None else None


def compute_outcome(run: Run, figures: dict[str, Any], pricing: Pricing | None = None) -> RunOutcome:
    """The run's contribution from its resolved figures (``figures.resolve``), its steps priced by
    ``pricing`` (none: no cost figures)."""
    step_token_totals: Counter[tuple[str, str]] = Counter()
    step_counts: Counter[tuple[str, str, str]] = Counter()
    steps: list[Step] = figures.get("steps", [])
    for step in steps:
        model = free_label(step.model_label)
        for token_type, count in step_tokens(step).items():
            if count:
                step_token_totals[(model, token_type)] += count
        step_counts[(model, enum_label(step.status), enum_label(step.stop_reason))] += 1
    cost = pricing.price_run(run, steps) if pricing is not None else None
    return RunOutcome(
        run_id=run.id,
        agent_id=figures.get("agent_id"),
        status=enum_label(run.status),
        stop_reason=enum_label(figures.get("stop_reason")),
        ttft_seconds=_seconds(figures.get("ttft_ns")),
        duration_seconds=_seconds(figures.get("duration_ns")),
        num_steps=figures.get("num_steps"),
        run_tokens=figures.get("tokens", {}),
        step_tokens=dict(step_token_totals),
        steps=dict(step_counts),
        tool_calls=dict(Counter(free_label(tool) for tool in figures.get("tools", ()))),
        callback=figures.get("callback"),
        cost_usd=cost.usd if cost is not None else {},
        unpriced_tokens=cost.unpriced_tokens if cost is not None else {},
    )
