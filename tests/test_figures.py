"""The figure table (exporter/figures.py) against what real servers answered: a real Letta 0.11.7's
runs (agent only in metadata or on the steps, no run stop reason, background runs without a
duration, the cumulative step row) and a real 0.16.8's, plus the reading rule: a source is read
only while a figure still needs it, and a late one holds its figure back while a look remains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.figures import (
    FIGURES,
    NOTHING,
    Reads,
    Source,
    awaits_listing,
    listed_agent,
    next_source,
    resolve,
    steps_stop_reason,
    without,
)
from exporter.letta.models import Run, RunMetrics, Step, UsageStatistics
from exporter.outcome import compute_outcome

FIXTURES = Path(__file__).parent / "fixtures"
OLD = FIXTURES / "letta-real-0.11.7"
NEW = FIXTURES / "letta-real"
EVERYTHING = lambda source: True  # noqa: E731


def body(path: Path) -> Any:
    doc = json.loads(path.read_text())
    return doc["body"] if isinstance(doc, dict) and "path" in doc and "body" in doc else doc


def old_run(name: str) -> tuple[Run, list[Step], UsageStatistics]:
    run = Run.model_validate(body(OLD / f"{name}.json"))
    steps = [Step.model_validate(item) for item in body(OLD / f"{name}_steps.json")]
    usage = UsageStatistics.model_validate(body(OLD / f"{name}_usage.json"))
    return run, steps, usage


def figures_of(run: Run, *, may_settle: bool = False, **sources: Any) -> dict[str, Any] | None:
    reads = Reads({Source(name): data for name, data in sources.items()})
    return resolve(run, reads, EVERYTHING, may_settle=may_settle)


AGENT_011 = "agent-6bc4098d-6430-4360-a3e2-b24d5bf2556a"


def test_011_completed_run_agent_from_metadata_stop_reason_from_steps() -> None:
    run, steps, _ = old_run("run0")
    assert run.agent_id is None and run.stop_reason is None and run.metadata_agent_id == AGENT_011
    assert listed_agent(run) == AGENT_011  # for the runs-in-flight gauge, before any step is read
    figures = figures_of(run, steps=steps, metrics=NOTHING, trace=NOTHING)
    assert figures is not None
    assert figures["agent_id"] == AGENT_011
    assert figures["stop_reason"] == "end_turn"
    assert figures["duration_ns"] == run.total_duration_ns == 466676355
    assert figures["num_steps"] == 1


def test_011_failed_run_lost_its_agent_in_metadata_the_steps_have_it() -> None:
    run = Run.model_validate(body(OLD / "run_failed.json"))
    steps = [Step.model_validate(item) for item in body(OLD / "run_failed_steps.json")]
    assert run.status == "failed" and run.metadata_agent_id is None and listed_agent(run) is None
    outcome = compute_outcome(run, figures_of(run, steps=steps) or {})
    assert (outcome.agent_id, outcome.status, outcome.stop_reason) == (AGENT_011, "failed", "error")
    assert outcome.steps == {("gpt-4o-mini", "failed", "error"): 1}


def test_011_background_run_has_no_duration_so_a_look_is_waited_then_the_wall_clock() -> None:
    run, steps, _ = old_run("run_async")
    assert run.total_duration_ns is None and run.metadata_agent_id is None
    assert awaits_listing(run)  # a later listing may still bring its duration
    assert figures_of(run, may_settle=True, steps=steps, metrics=NOTHING) is None
    figures = figures_of(run, steps=steps, metrics=NOTHING)
    assert figures is not None
    wall = (run.completed_at - run.created_at).total_seconds()  # type: ignore[operator]
    assert figures["duration_ns"] == pytest.approx(wall * 1e9, abs=1000)
    assert figures["agent_id"] == AGENT_011
    assert figures["stop_reason"] == "end_turn"


def test_011_tokens_are_the_step_rows_cumulative_quirk_included() -> None:
    """0.11 wrote a two-step run's second row with the run's cumulative figures; /usage sums the rows,
    and so does the exporter: the same as Letta's own total, quirk and all (docs/servers.md)."""
    run, steps, usage = old_run("run2")
    assert [(s.prompt_tokens, s.completion_tokens) for s in steps] == [(1984, 24), (908, 12)]
    tokens = (figures_of(run, steps=steps) or {})["tokens"]
    assert (tokens["prompt"], tokens["completion"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert (tokens["prompt"], tokens["completion"]) == (2892, 36)
    # Without steps, /usage says the same.
    from_usage = (figures_of(run, steps=NOTHING, usage=usage) or {})["tokens"]
    assert (from_usage["prompt"], from_usage["completion"]) == (2892, 36)


def test_011_steps_name_their_run_as_job_id() -> None:
    run, steps, _ = old_run("run2")
    assert {step.run_id for step in steps} == {run.id}
    listed = [Step.model_validate(item) for item in body(OLD / "steps_default.json")]
    assert all(step.run_id and step.run_id.startswith("run-") for step in listed)


@pytest.mark.parametrize("status, terminal", [("expired", True), ("pending", False), ("created", False)])
def test_011_statuses(status: str, terminal: bool) -> None:
    assert Run(id="run-1", status=status).is_terminal is terminal


def test_011_list_rows_parse_every_one() -> None:
    for path in [*sorted(OLD.glob("list_*.json")), OLD / "runs_active.json"]:
        rows = body(path)
        runs = [Run.model_validate(row) for row in rows]
        assert len(runs) == len(rows) and all(run.created_at is not None for run in runs)


def test_0168_failed_run_with_null_stop_reason_takes_its_failed_steps_and_none_without_steps() -> None:
    failed = Run.model_validate(body(NEW / "run_failed_None_432c6711.json"))
    steps = [Step.model_validate(item) for item in body(NEW / "run_failed_None_432c6711_steps.json")]
    assert failed.stop_reason is None
    assert (figures_of(failed, steps=steps) or {})["stop_reason"] == "error"
    refused = Run.model_validate(body(NEW / "run_failed_None_1e6839f1.json"))
    assert "stop_reason" not in (figures_of(refused, steps=[]) or {})


def test_steps_stop_reason_prefers_the_step_that_ended_the_run() -> None:
    def step(status: str, reason: str | None) -> Step:
        return Step(id=f"step-{status}-{reason}", status=status, stop_reason=reason)

    assert steps_stop_reason([step("success", None), step("success", "end_turn")]) == "end_turn"
    assert steps_stop_reason([step("success", None)]) is None
    disagreeing = [step("success", "max_steps"), step("failed", "llm_api_error")]
    assert steps_stop_reason(disagreeing) == "llm_api_error"


def test_a_source_is_read_only_while_a_figure_still_needs_it() -> None:
    run = Run.model_validate(body(NEW / "run_completed_end_turn_073f7574.json"))
    steps = [Step.model_validate(s) for s in body(NEW / "run_completed_end_turn_073f7574_steps.json")]
    metrics = RunMetrics.model_validate(body(NEW / "run_completed_end_turn_073f7574_metrics.json"))
    reads = Reads()
    order = []
    while (source := next_source(run, reads, EVERYTHING)) is not None:
        order.append(source)
        reads.data[source] = {Source.STEPS: steps, Source.RUN_METRICS: metrics}.get(source, NOTHING)
    # The agent and stop reason are on the run; the duration is not yet: /metrics; the steps for the
    # count and tokens; /trace only for a TTFT, and these steps name no trace. /usage never.
    assert order == [Source.RUN_METRICS, Source.STEPS]
    switched_off = lambda source: source is not Source.RUN_METRICS  # noqa: E731
    reads = Reads({Source.STEPS: steps})
    assert next_source(run, reads, switched_off) is None


def test_usage_is_read_only_when_the_steps_give_nothing() -> None:
    run = Run(id="run-1", status="completed", agent_id="agent-1", stop_reason="end_turn", total_duration_ns=5)
    reads = Reads({Source.STEPS: NOTHING, Source.RUN_METRICS: NOTHING})
    assert next_source(run, reads, EVERYTHING) is Source.USAGE


def test_what_a_missing_endpoint_costs_is_said_figure_by_figure() -> None:
    said = without(Source.RUN_METRICS)
    assert "tools: none" in said
    assert "duration_ns from the run's total_duration_ns, then the run's completed_at - created_at" in said
    assert "num_steps only from the number of steps" in said
    assert "agent_id" not in said  # /metrics gives no agent
    # Every source some figure takes is one the enrichment knows how to read.
    assert {take.source for figure in FIGURES for take in figure.takes} == set(Source)
