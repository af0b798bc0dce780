"""``/trace`` rows as a Letta server with ClickHouse trace storage answers them.

Letta's handler runs ``SELECT * FROM otel_traces WHERE TraceId = … AND (SpanName = 'agent_step' OR
SpanName LIKE '%._execute_tool' OR ParentSpanId = '' OR SpanName = 'time_to_first_token') ORDER BY
Timestamp`` and returns the rows as JSON, one object per span with the collector's column names. So:

- only a subset of the trace comes back, and spans whose parent was filtered out point at a parent
  that is not in the answer (here ``agent_step`` under the hidden ``LettaAgentV3.step`` span, and
  every other tool span under the hidden ``LettaAgentV3._handle_ai_response``);
- the request span is the root (empty ``ParentSpanId``) and carries the request body as
  ``http.request.body.*`` attributes; tool spans carry the method arguments as ``parameter.*``;
- attributes are ClickHouse ``Map(String, String)``: every value is a string;
- dialects are mixed on purpose, as different drivers and versions serialise them: ``Timestamp`` as
  integer nanoseconds, ISO strings with microseconds (naive) or nanoseconds (``Z``), or ClickHouse's
  own ``YYYY-MM-DD hh:mm:ss.nnnnnnnnn``; IDs sometimes upper-case; ``Duration`` sometimes a string.

Each span is generated first as a ``TruthSpan`` (exact nanoseconds, lower-case IDs), then written out
as a row, so tests can compare what an exporter sends against what the row meant.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.runs import RunDetails, SimRun, StepData, failure, make_uuid
from exporter.simulator.shapes import ORG_ID, VERSION, to_datetime

SERVICE_NAME = "letta-server"
FASTAPI_SCOPE = ("opentelemetry.instrumentation.fastapi", "0.51b0")
LETTA_SCOPE = ("letta.otel.tracing", "")
TOOL_SPAN = "LettaAgentV3._execute_tool"
TOOL_NAMES = ("web_search", "archival_memory_search", "conversation_search", "core_memory_append",
              "run_code", "fetch_webpage", "memory_replace", "send_email")  # fmt: skip
FORMATS = ("ns", "iso_us", "iso_ns_z", "clickhouse")
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class TruthEvent:
    name: str
    time_ns: int
    attributes: dict[str, str]


@dataclass(frozen=True)
class TruthLink:
    trace_id: str
    span_id: str
    trace_state: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class TruthSpan:
    """What one row means: IDs lower-case hex, times in exact nanoseconds, kind and status as the
    OTLP enum names (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``)."""

    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str
    trace_state: str
    attributes: dict[str, str]
    events: tuple[TruthEvent, ...]
    links: tuple[TruthLink, ...]
    resource: dict[str, str]
    scope: tuple[str, str]
    hidden_parent: bool = field(default=False)  # its parent is a span the answer leaves out


# -- formatting ------------------------------------------------------------------------------------


def _iso(ns: int, style: str) -> str:
    moment = to_datetime(ns // 1000)
    base = f"{moment:%Y-%m-%d}{'T' if style != 'clickhouse' else ' '}{moment:%H:%M:%S}"
    if style == "iso_us":
        return f"{base}.{moment.microsecond:06d}"
    fraction = f"{ns % 1_000_000_000:09d}"
    return f"{base}.{fraction}Z" if style == "iso_ns_z" else f"{base}.{fraction}"


def _timestamp(ns: int, style: str) -> Any:
    return ns if style == "ns" else _iso(ns, style)


def _exact(ns: int, style: str) -> int:
    """The instant a timestamp written in ``style`` stands for (ISO-µs drops the nanoseconds)."""
    return ns // 1000 * 1000 if style == "iso_us" else ns


def _case(hex_id: str, upper: bool) -> str:
    return hex_id.upper() if upper and hex_id else hex_id


_KIND_COLUMN = {"SPAN_KIND_SERVER": "Server", "SPAN_KIND_INTERNAL": "Internal", "SPAN_KIND_CLIENT": "Client"}
_STATUS_COLUMN = {"STATUS_CODE_UNSET": "Unset", "STATUS_CODE_OK": "Ok", "STATUS_CODE_ERROR": "Error"}


def row_of(span: TruthSpan, style: str, upper: bool, duration_as_text: bool) -> dict[str, Any]:
    """The ClickHouse row of ``span``, columns in the table's order."""
    duration = span.end_ns - span.start_ns
    return {
        "Timestamp": _timestamp(span.start_ns, style),
        "TraceId": _case(span.trace_id, upper),
        "SpanId": _case(span.span_id, upper),
        "ParentSpanId": _case(span.parent_span_id, upper),
        "TraceState": span.trace_state,
        "SpanName": span.name,
        "SpanKind": _KIND_COLUMN[span.kind],
        "ServiceName": span.resource["service.name"],
        "ResourceAttributes": dict(span.resource),
        "ScopeName": span.scope[0],
        "ScopeVersion": span.scope[1],
        "SpanAttributes": dict(span.attributes),
        "Duration": str(duration) if duration_as_text else duration,
        "StatusCode": _STATUS_COLUMN[span.status_code],
        "StatusMessage": span.status_message,
        "Events.Timestamp": [_timestamp(event.time_ns, style) for event in span.events],
        "Events.Name": [event.name for event in span.events],
        "Events.Attributes": [dict(event.attributes) for event in span.events],
        "Links.TraceId": [_case(link.trace_id, upper) for link in span.links],
        "Links.SpanId": [_case(link.span_id, upper) for link in span.links],
        "Links.TraceState": [link.trace_state for link in span.links],
        "Links.Attributes": [dict(link.attributes) for link in span.links],
    }


# -- the trace of a run ----------------------------------------------------------------------------


@dataclass
class _Draft:
    """A span being laid out; written to a TruthSpan once its row dialect is chosen."""

    span_id: str
    parent: str
    name: str
    kind: str
    start: int
    end: int
    scope: tuple[str, str] = LETTA_SCOPE
    status: str = "STATUS_CODE_UNSET"
    message: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    links: list[TruthLink] = field(default_factory=list)
    hidden_parent: bool = False


def _tool_name(tool_id: str, tools: tuple[str, ...]) -> str:
    return TOOL_NAMES[tools.index(tool_id) % len(TOOL_NAMES)] if tool_id in tools else "custom_tool"


def _agent_state(run: SimRun, rng: random.Random) -> str:
    """``parameter.agent_state``: Letta's repr of the whole agent, memory and all (here ~8 KB)."""
    words = ("The user", "prefers", "short answers", "lives in", "Lisbon", "asked about", "invoice #4411")
    memory = " ".join(rng.choice(words) for _ in range(1200))
    return (
        f"id='{run.agent.id}' name='{run.agent.name}' agent_type=<AgentType.letta_v1_agent> "
        f"system='You are {run.agent.name}, a helpful assistant.' memory=Memory(blocks=[Block("
        f"label='human', value='{memory}')]) llm_config=LLMConfig(model='{run.agent.model.name}')"
    )


def _step_drafts(
    run: SimRun, details: RunDetails, tools: tuple[str, ...], rng: random.Random, trace_id: str,
    hidden_loop: str, window: tuple[int, int],
) -> list[_Draft]:  # fmt: skip
    start, end = window
    steps = details.steps
    used = list(details.tools_used or ())
    drafts: list[_Draft] = []
    previous: _Draft | None = None
    for index, step in enumerate(steps):
        step_start = start + (end - start) * index // len(steps) + rng.randint(0, 999)
        step_end = start + (end - start) * (index + 1) // len(steps) - rng.randint(0, 999)
        draft = _step_draft(step, rng, hidden_loop, step_start, max(step_start, step_end))
        if previous is not None:
            draft.links.append(TruthLink(trace_id, previous.span_id, "",
                                         {"letta.link.type": "previous_step"}))  # fmt: skip
        drafts.append(draft)
        previous = draft
        last = index == len(steps) - 1
        if used and not last:
            tool_id = used[index % len(used)]
            drafts.append(_tool_draft(run, rng, draft, index, tool_id, _tool_name(tool_id, tools)))
    return drafts


def _step_draft(step: StepData, rng: random.Random, parent: str, start: int, end: int) -> _Draft:
    llm_ms = max(1, (end - start) * 6 // 10 // NS_PER_MS)
    draft = _Draft(f"{rng.getrandbits(64):016x}", parent, "agent_step", "SPAN_KIND_INTERNAL", start, end,
                   attributes={"step_id": step.id}, hidden_parent=True)  # fmt: skip
    draft.events = [
        ("request_start_to_provider_request_start_ns", start + 1_500_000,
         {"request_start_to_provider_request_start_ns": str(1_500_000 + rng.randint(0, 999_999))}),
        ("llm_request_ms", start + llm_ms * NS_PER_MS, {"duration_ms": str(llm_ms)}),
        ("step_ms", end, {"duration_ms": str((end - start) // NS_PER_MS)}),
    ]  # fmt: skip
    if step.status == "failed":
        draft.status = "STATUS_CODE_ERROR"
        draft.message = f"{step.error_type}: {step.error_message}"
    return draft


def _tool_draft(run: SimRun, rng: random.Random, step: _Draft, index: int, tool_id: str, name: str) -> _Draft:
    start = step.start + (step.end - step.start) * 6 // 10 + rng.randint(1, 999)
    end = max(start, step.start + (step.end - step.start) * 9 // 10)
    # Every other tool span hangs under the hidden response handler rather than its agent_step.
    under_step = index % 2 == 0
    parent = step.span_id if under_step else f"{rng.getrandbits(64):016x}"  # that step's handler span
    args = json.dumps({"query": f"status of invoice #{4400 + index}", "request_heartbeat": True})
    draft = _Draft(f"{rng.getrandbits(64):016x}", parent, TOOL_SPAN, "SPAN_KIND_INTERNAL", start, end,
                   hidden_parent=not under_step)  # fmt: skip
    draft.attributes = {
        "parameter.agent_state": _agent_state(run, rng),
        "parameter.tool_args": args,
        "parameter.tool_name": name,
        "parameter.agent_step_span": f"NonRecordingSpan(SpanContext(span_id=0x{step.span_id}))",
    }
    step.events.insert(2, ("tool_execution_started", start, {}))
    step.events.insert(3, ("tool_execution_completed", end, {
        "tool_type": "custom", "tool_id": tool_id, "tool_name": name,
        "duration_ms": str((end - start) // NS_PER_MS), "success": "True"}))  # fmt: skip
    return draft


def trace_of(
    run: SimRun, details: RunDetails, tools: tuple[str, ...]
) -> list[tuple[TruthSpan, dict[str, Any]]]:
    """The spans ``/trace`` answers with for a finished run, each with its row, in ``Timestamp``
    order; none for a run without a trace ID (no steps, or steps that recorded none)."""
    trace_id = details.steps[0].trace_id if details.steps else None
    if trace_id is None or run.end_us is None or run.run_ns is None:
        return []
    rng = random.Random(f"trace-{run.seed}")
    created = run.created_us * 1000 + rng.randint(0, 999)
    root_start = created - rng.randint(1_000_000, 3_000_000)  # the request arrives before the run row
    root_end = created + run.run_ns + rng.randint(100_000, 900_000)
    path = f"/v1/agents/{run.agent.id}/messages{'/stream' if run.streaming else ''}"
    root = _Draft(f"{rng.getrandbits(64):016x}", "", f"POST {path}", "SPAN_KIND_SERVER", root_start, root_end,
                  scope=FASTAPI_SCOPE)  # fmt: skip
    user_text = "Can you check the status of invoice #4411 and email me a summary?"
    root.attributes = {
        "http.method": "POST",
        "http.url": f"http://localhost:8283{path}",
        "http.status_code": "200",
        "http.agent_id": run.agent.id,
        "agent.id": run.agent.id,
        "user.id": "user-00000000-0000-4000-8000-000000000000",
        "organization.id": ORG_ID,
        "http.request.body.messages": json.dumps([{"role": "user", "content": user_text}]),
        "http.request.body.stream_tokens": str(run.streaming),
        "http.request.body.use_assistant_message": "True",
    }
    if run.status == "failed":
        error_type, message = failure(run)
        root.status, root.message = "STATUS_CODE_ERROR", f"{error_type}: {message}"
        root.events.append(("exception", created + run.run_ns,
                            {"exception.type": error_type, "exception.message": message}))  # fmt: skip
    drafts = [root]
    hidden_loop = f"{rng.getrandbits(64):016x}"  # LettaAgentV3.step: a parent /trace leaves out
    ttft = run.ttft_ns
    if ttft is not None:
        ttft_span = _Draft(f"{rng.getrandbits(64):016x}", root.span_id, "time_to_first_token",
                           "SPAN_KIND_INTERNAL", created, created + ttft)  # fmt: skip
        ttft_span.events = [("time_to_first_token_ms", created + ttft, {"ttft_ms": str(ttft // NS_PER_MS)})]
        drafts.append(ttft_span)
    window = (created + 500_000, created + run.run_ns)
    drafts += _step_drafts(run, details, tools, rng, trace_id, hidden_loop, window)
    device = make_uuid(rng)
    resource = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.30.0",
        "service.name": SERVICE_NAME,
        "device.id": device,
        "letta.version": VERSION,
    }
    written = [_finish(draft, trace_id, resource, rng) for draft in drafts]
    written.sort(key=lambda pair: (pair[0].start_ns, pair[0].span_id))
    return written


def _finish(
    draft: _Draft, trace_id: str, resource: dict[str, str], rng: random.Random
) -> tuple[TruthSpan, dict[str, Any]]:
    """The span as the row means it, and the row in a dialect drawn for it."""
    style = rng.choice(FORMATS)
    upper = rng.random() < 0.25
    duration_as_text = rng.random() < 0.3
    start = _exact(draft.start, style)
    span = TruthSpan(
        trace_id=trace_id,
        span_id=draft.span_id,
        parent_span_id=draft.parent,
        name=draft.name,
        kind=draft.kind,
        start_ns=start,
        end_ns=start + max(0, draft.end - draft.start),
        status_code=draft.status,
        status_message=draft.message,
        trace_state="",
        attributes=draft.attributes,
        events=tuple(TruthEvent(name, _exact(at, style), attrs) for name, at, attrs in draft.events),
        links=tuple(draft.links),
        resource=resource,
        scope=draft.scope,
        hidden_parent=draft.hidden_parent,
    )
    return span, row_of(span, style, upper, duration_as_text)
