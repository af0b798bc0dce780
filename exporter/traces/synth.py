"""A trace for a run Letta kept none for (``/trace`` answered 501, or ``[]``), built from the run and
its steps: a root span for the run and one ``agent_step`` span per step, their IDs derived from the
run's and steps' (or the steps' ``trace_id``), so the same run always gives the same spans. The
shape and the attributes: docs/traces.md ("No trace storage").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import StatusCode

from exporter import __version__
from exporter.letta.models import Run, Step
from exporter.traces.rows import TTFT_ATTRIBUTE, TTFT_EVENT
from exporter.traces.spans import AttributePolicy, EventData, SpanData, build_span, steps_trace_id

SERVICE_NAME = "letta-server"
ROOT_SPAN = "invoke_agent"
STEP_SPAN = "agent_step"
SYNTHETIC = "letta.synthetic"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RESOURCE = Resource({"service.name": SERVICE_NAME})
SCOPE = InstrumentationScope("letta-exporter.synthesis", __version__)


def derived_id(nbytes: int, *parts: str) -> int:
    """A non-zero ID of ``nbytes`` bytes, the same for the same ``parts`` on every run and host."""
    digest = hashlib.sha256("\x1f".join(("letta-exporter", *parts)).encode()).digest()
    return int.from_bytes(digest[:nbytes], "big") or 1


def epoch_ns(moment: datetime) -> int:
    # Integer arithmetic: a float round trip would move the microseconds.
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def _common(run: Run) -> dict[str, Any]:
    # Here and below, attributes that come out None are left out by the attribute policy.
    return {"letta.run.id": run.id, SYNTHETIC: True, "letta.agent.id": run.agent_id or None}


def _step_span(
    run: Run, step: Step, index: int, trace_id: int, parent: int, start: int, end: int
) -> SpanData:
    attributes = {
        "gen_ai.operation.name": "chat",
        **_common(run),
        "letta.step.id": step.id or None,
        "gen_ai.request.model": step.model or step.model_handle or None,
        "gen_ai.provider.name": step.provider_name or None,
        "gen_ai.system": step.provider_name or None,  # the pre-1.37 name, still read by many backends
        "gen_ai.usage.input_tokens": step.prompt_tokens,
        "gen_ai.usage.output_tokens": step.completion_tokens,
        "gen_ai.response.finish_reasons": (step.stop_reason,) if step.stop_reason else None,
        "letta.step.status": step.status or None,
        "error.type": step.error_type or None,
    }
    failed = step.status == "failed" or step.error_type is not None
    return SpanData(
        name=STEP_SPAN,
        trace_id=trace_id,
        span_id=derived_id(8, "step", run.id, step.id or f"#{index}"),
        parent_id=parent,
        start=start,
        end=end,
        status=StatusCode.ERROR if failed else StatusCode.UNSET,
        status_message=(step.error_type or step.stop_reason or "failed") if failed else "",
        attributes=attributes,
    )


def synthesise(
    run: Run, steps: Sequence[Step] | None, policy: AttributePolicy, *, ttft_ns: int | None = None
) -> list[ReadableSpan]:
    """The run's spans, root first; none for a run without ``created_at`` (nothing to anchor)."""
    if run.created_at is None:
        return []
    start = epoch_ns(run.created_at)
    # Without completed_at (not seen from a real server), the duration Letta wrote, if any.
    end = epoch_ns(run.completed_at) if run.completed_at else start + (run.total_duration_ns or 0)
    end = max(start, end)
    steps = list(steps or ())
    trace_id = steps_trace_id(steps) or derived_id(16, "trace", run.id)
    root_id = derived_id(8, "run", run.id)

    attributes = {
        "gen_ai.operation.name": ROOT_SPAN,
        **_common(run),
        "letta.run.status": run.status,
        "gen_ai.agent.id": run.agent_id or None,
        "gen_ai.conversation.id": run.conversation_id or None,
        "letta.run.stop_reason": run.stop_reason or None,
        "gen_ai.usage.input_tokens": sum(step.prompt_tokens or 0 for step in steps) if steps else None,
        "gen_ai.usage.output_tokens": sum(step.completion_tokens or 0 for step in steps) if steps else None,
    }
    failed = run.status == "failed"
    events = []
    if ttft_ns is not None:
        events.append(EventData(TTFT_EVENT, start + ttft_ns, {TTFT_ATTRIBUTE: ttft_ns / 1e6}))
    root = SpanData(
        name=ROOT_SPAN,
        trace_id=trace_id,
        span_id=root_id,
        parent_id=None,
        start=start,
        end=end,
        status=StatusCode.ERROR if failed else StatusCode.UNSET,
        status_message=(run.stop_reason or "failed") if failed else "",
        attributes=attributes,
        events=events,
    )
    spans = [root]
    count = len(steps)
    for index, step in enumerate(steps):
        step_start = start + (end - start) * index // count
        step_end = start + (end - start) * (index + 1) // count
        spans.append(_step_span(run, step, index, trace_id, root_id, step_start, step_end))
    return [build_span(span, RESOURCE, SCOPE, policy) for span in spans]
