"""Run-outcome totals: the fast text /metrics serves equals prometheus-client's rendering of the
same data, and what the state file saves loads back whole."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.outcome import RunOutcome
from exporter.totals import RunTotals, TotalsError, TotalsText
from tests.support import TotalsCollector

BUCKETS = {
    "letta_run_ttft_seconds": (0.1, 1.0, 2.5),
    "letta_run_duration_seconds": (1.0, 10.0),
    "letta_run_steps": (1, 2, 5),
}


def render_text(totals: RunTotals) -> str:
    """One rendering of ``totals`` from scratch (``TotalsText`` keeps what it wrote for the next)."""
    return b"".join(TotalsText(totals).render()).decode()


def outcome(n: int, **overrides: object) -> RunOutcome:
    fields: dict[str, object] = dict(
        run_id=f"run-{n}", agent_id=f"agent-{n % 3}", status="completed" if n % 4 else "failed",
        stop_reason="end_turn" if n % 4 else "llm_api_error", ttft_seconds=0.05 * n if n % 2 else None,
        duration_seconds=1.5 * n, num_steps=n % 6, run_tokens={"prompt": 10 * n, "completion": n},
        step_tokens={("gpt-4o-mini", "prompt"): 10 * n}, steps={("gpt-4o-mini", "success", "end_turn"): 1},
        tool_calls={"tool-1": 1} if n % 3 else {}, callback="success" if n % 5 == 0 else None,
    )  # fmt: skip
    fields.update(overrides)
    return RunOutcome(**fields)  # type: ignore[arg-type]


def filled(agent_label: bool = True) -> RunTotals:
    totals = RunTotals(BUCKETS, agent_label=agent_label)
    for n in range(40):
        agent = (f"agent-{n % 3}",) if agent_label else ()
        totals.record(outcome(n), agent)
    # Label values that need escaping in the text format.
    totals.record(outcome(1, stop_reason='we"ird\\reason\nx'), ("agent-1",) if agent_label else ())
    return totals


@pytest.mark.parametrize("agent_label", [True, False])
def test_fast_text_equals_prometheus_client_rendering(agent_label: bool) -> None:
    totals = filled(agent_label)
    registry = CollectorRegistry()
    registry.register(TotalsCollector(totals))
    assert render_text(totals) == generate_latest(registry).decode()


def test_incremental_rendering_writes_again_every_series_that_changed() -> None:
    totals = filled()
    text = TotalsText(totals)
    first = b"".join(text.render())
    # Changes to series already written (every family), and series new since: a new agent.
    for n in range(40, 47):
        totals.record(outcome(n), (f"agent-{n % 4}",))
    registry = CollectorRegistry()
    registry.register(TotalsCollector(totals))
    assert b"".join(text.render()).decode() == generate_latest(registry).decode() == render_text(totals)
    assert b"".join(text.render()) != first


def test_dump_then_load_gives_the_same_totals_and_a_bad_file_changes_nothing() -> None:
    totals = filled()
    copy = RunTotals(BUCKETS)
    copy.load(totals.dump())
    assert render_text(copy) == render_text(totals)
    bad = totals.dump()
    bad["letta_run_duration_seconds"][0]["buckets"].append(1)  # a bucket more than these have
    untouched = RunTotals(BUCKETS)
    with pytest.raises(TotalsError, match="buckets changed"):
        untouched.load(bad)
    assert render_text(untouched) == render_text(RunTotals(BUCKETS))
