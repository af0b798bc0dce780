"""Synthesised traces for runs Letta kept none for: structure, GenAI attribute names, deterministic
IDs and error status."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from exporter.letta.models import Run, Step
from exporter.traces.spans import AttributePolicy
from exporter.traces.synth import synthesise

POLICY = AttributePolicy()
STEP_TRACE = "0AF7651916CD43DD8448EB211C80319C"


def make_run(**fields: Any) -> Run:
    base = {
        "id": "run-7d5c67ea-507e-4f65-8827-0711073f7574",
        "status": "completed",
        "stop_reason": "end_turn",
        "agent_id": "agent-135ddd0b-0594-45e8-a5bd-9ba19bfc12cc",
        "created_at": "2026-11-22T17:50:03.123456Z",
        "completed_at": "2026-11-22T17:50:05.439248",  # naive, as Letta writes it
        "ttft_ns": 850_000_000,
    }
    return Run.model_validate({**base, **fields})


def make_step(index: int, **fields: Any) -> Step:
    base = {
        "id": f"step-{index:08d}-8f71-4ca0-a7a9-73dd7c13dc5c",
        "provider_name": "openai",
        "model": "gpt-4o-mini",
        "model_handle": "openai/gpt-4o-mini",
        "prompt_tokens": 900 + index,
        "completion_tokens": 12 + index,
        "stop_reason": None,
        "status": "success",
        "trace_id": None,
    }
    return Step.model_validate({**base, **fields})


def derived(nbytes: int, *parts: str) -> int:
    """The documented derivation, recomputed here so a change to it (breaking idempotent resends
    across versions) fails this test."""
    digest = hashlib.sha256("\x1f".join(("letta-exporter", *parts)).encode()).digest()
    return int.from_bytes(digest[:nbytes], "big")


def test_root_span_for_the_run_and_a_child_per_step() -> None:
    run = make_run()
    steps = [make_step(0), make_step(1), make_step(2, stop_reason="end_turn")]
    root, *children = synthesise(run, steps, POLICY, ttft_ns=run.ttft_ns)
    start, end = 1795369803_123456000, 1795369805_439248000
    assert (root.name, root.kind, root.parent) == ("invoke_agent", SpanKind.INTERNAL, None)
    assert (root.start_time, root.end_time) == (start, end)
    assert root.status.status_code is StatusCode.UNSET
    assert [(e.name, e.timestamp, dict(e.attributes)) for e in root.events] == [
        ("time_to_first_token_ms", start + 850_000_000, {"ttft_ms": 850.0})
    ]
    assert [child.name for child in children] == ["agent_step"] * 3
    root_context = root.get_span_context()
    for child in children:
        assert child.parent is not None and child.parent.span_id == root_context.span_id
        assert child.get_span_context().trace_id == root_context.trace_id
    # Steps carry no timestamps in the API: they share the run's time evenly and in order.
    bounds = [(child.start_time, child.end_time) for child in children]
    assert bounds[0][0] == start and bounds[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert len({b - a for a, b in bounds}) <= 2  # equal up to a nanosecond of rounding
    assert dict(root.resource.attributes) == {"service.name": "letta-server"}
    assert (
        root.instrumentation_scope is not None
        and root.instrumentation_scope.name == "letta-exporter.synthesis"
    )


def test_genai_and_letta_attribute_names() -> None:
    run = make_run(conversation_id="conv-1")
    steps = [make_step(0), make_step(1, stop_reason="end_turn")]
    root, first, last = synthesise(run, steps, POLICY)
    assert dict(root.attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": run.agent_id,
        "gen_ai.conversation.id": "conv-1",
        "gen_ai.usage.input_tokens": 900 + 901,
        "gen_ai.usage.output_tokens": 12 + 13,
        "letta.run.id": run.id,
        "letta.agent.id": run.agent_id,
        "letta.run.status": "completed",
        "letta.run.stop_reason": "end_turn",
        "letta.synthetic": True,
    }
    assert dict(last.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.usage.input_tokens": 901,
        "gen_ai.usage.output_tokens": 13,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "letta.run.id": run.id,
        "letta.agent.id": run.agent_id,
        "letta.step.id": steps[1].id,
        "letta.step.status": "success",
        "letta.synthetic": True,
    }
    assert "gen_ai.response.finish_reasons" not in first.attributes  # an intermediate step


def test_ids_are_deterministic_and_use_the_steps_trace_id() -> None:
    run = make_run()
    steps = [make_step(0, trace_id=STEP_TRACE), make_step(1, trace_id=STEP_TRACE)]
    once = synthesise(run, steps, POLICY)
    again = synthesise(
        make_run(), [make_step(0, trace_id=STEP_TRACE), make_step(1, trace_id=STEP_TRACE)], POLICY
    )
    ids = [(s.get_span_context().trace_id, s.get_span_context().span_id) for s in once]
    assert ids == [(s.get_span_context().trace_id, s.get_span_context().span_id) for s in again]
    assert {trace for trace, _ in ids} == {int(STEP_TRACE, 16)}  # upper-case hex accepted
    assert ids[0][1] == derived(8, "run", run.id)
    assert ids[1][1] == derived(8, "step", run.id, steps[0].id or "")
    assert len({span for _, span in ids}) == 3


def test_without_a_step_trace_id_the_trace_id_derives_from_the_run() -> None:
    run = make_run()
    (root, step) = synthesise(run, [make_step(0)], POLICY)
    assert (
        root.get_span_context().trace_id == step.get_span_context().trace_id == derived(16, "trace", run.id)
    )
    other = synthesise(make_run(id="run-00000000-0000-4000-8000-000000000001"), [make_step(0)], POLICY)
    assert other[0].get_span_context().trace_id != root.get_span_context().trace_id
    assert other[1].get_span_context().span_id != step.get_span_context().span_id


def test_failed_runs_and_steps_carry_error_status() -> None:
    run = make_run(status="failed", stop_reason="llm_api_error", ttft_ns=None)
    steps = [
        make_step(0),
        make_step(1, status="failed", stop_reason="llm_api_error", error_type="LLMServerError"),
    ]
    root, ok, failed = synthesise(run, steps, POLICY)
    assert (root.status.status_code, root.status.description) == (StatusCode.ERROR, "llm_api_error")
    assert root.events == ()  # no TTFT to mark
    assert ok.status.status_code is StatusCode.UNSET
    assert (failed.status.status_code, failed.status.description) == (StatusCode.ERROR, "LLMServerError")
    assert failed.attributes["error.type"] == "LLMServerError"
    # A failed run without a stop reason (Letta sends null at times) still says it failed.
    (bare,) = synthesise(make_run(status="failed", stop_reason=None), [], POLICY)
    assert (bare.status.status_code, bare.status.description) == (StatusCode.ERROR, "failed")
    cancelled, *_ = synthesise(make_run(status="cancelled", stop_reason="cancelled"), [], POLICY)
    assert cancelled.status.status_code is StatusCode.UNSET
    assert cancelled.attributes["letta.run.status"] == "cancelled"


def test_edge_cases_without_times_or_steps() -> None:
    assert synthesise(make_run(created_at=None), [make_step(0)], POLICY) == []
    (root,) = synthesise(make_run(completed_at=None, total_duration_ns=2_000_000_000), None, POLICY)
    assert root.end_time - root.start_time == 2_000_000_000
    assert "gen_ai.usage.input_tokens" not in root.attributes  # steps not read: no totals to claim
