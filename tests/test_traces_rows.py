"""Letta's /trace rows → OpenTelemetry spans: every dialect of the columns, the attribute policy
(deny list, value-length and count limits), orphan re-parenting and the TTFT fallback. Pure and
fast: the spans are the SDK objects the OTLP exporter encodes (receivers: test_traces_export.py)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from exporter.config import Settings
from exporter.simulator import SimConfig, Simulator
from exporter.traces.rows import (
    ORIGINAL_PARENT_ATTRIBUTE,
    convert_rows,
    parse_kind,
    parse_status,
    parse_timestamp,
    trace_settled,
    ttft_ns_from_rows,
)
from exporter.traces.spans import DEFAULT_VALUE_LENGTH, AttributePolicy, attribute_value
from tests.support import QUICK, FakeClock

OPEN = AttributePolicy(max_value_length=None)  # nothing denied, nothing cut
TRACE = "4BF92F3577B34DA6A3CE929D0E0E4736"
LIMIT_ENV = (
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
)


@pytest.fixture(autouse=True)
def no_limit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LIMIT_ENV:
        monkeypatch.delenv(name, raising=False)


def row(**columns: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Timestamp": 1_800_000_000_123_456_789,
        "TraceId": TRACE,
        "SpanId": "00F067AA0BA902B7",
        "ParentSpanId": "",
        "TraceState": "",
        "SpanName": "agent_step",
        "SpanKind": "Internal",
        "ServiceName": "letta-server",
        "ResourceAttributes": {"service.name": "letta-server"},
        "ScopeName": "letta.otel.tracing",
        "ScopeVersion": "",
        "SpanAttributes": {},
        "Duration": 1000,
        "StatusCode": "Unset",
        "StatusMessage": "",
    }
    return {**base, **columns}


def convert(rows: list[dict[str, Any]], policy: AttributePolicy = OPEN, **kwargs: Any) -> list[ReadableSpan]:
    spans, skipped = convert_rows(rows, policy, **kwargs)
    assert skipped == 0
    return spans


# -- against the simulator's rows ------------------------------------------------------------------


def test_simulated_rows_convert_to_exactly_the_spans_they_mean() -> None:
    clock = FakeClock(1_800_000_000.25)
    sim = Simulator(SimConfig(seed=5, agents=3, trace_mode="rows", **QUICK), clock=clock)
    sim.burst(40)
    clock.now += 5
    traced = [run for run in sim.truth() if run.trace_rows]
    assert len(traced) > 10
    rows = [row for run in traced for row in run.trace_rows]
    # The dialects the simulator mixes really are mixed.
    assert {type(r["Timestamp"]).__name__ for r in rows} == {"int", "str"}
    assert any(r["TraceId"].isupper() for r in rows) and any(r["TraceId"].islower() for r in rows)
    assert {type(r["Duration"]).__name__ for r in rows} == {"int", "str"}

    for run in traced:
        spans = convert(list(run.trace_rows))
        assert len(spans) == len(run.trace_spans)
        for span, truth in zip(spans, run.trace_spans, strict=True):
            context = span.get_span_context()
            assert f"{context.trace_id:032x}" == truth.trace_id
            assert f"{context.span_id:016x}" == truth.span_id
            assert (f"{span.parent.span_id:016x}" if span.parent else "") == truth.parent_span_id
            assert (span.name, span.kind.name) == (truth.name, truth.kind.removeprefix("SPAN_KIND_"))
            assert (span.start_time, span.end_time) == (truth.start_ns, truth.end_ns)
            assert span.status.status_code.name == truth.status_code.removeprefix("STATUS_CODE_")
            assert (span.status.description or "") == truth.status_message
            assert dict(span.attributes) == truth.attributes
            assert [(e.name, e.timestamp, dict(e.attributes)) for e in span.events] == [
                (e.name, e.time_ns, e.attributes) for e in truth.events
            ]
            assert [
                (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}", dict(link.attributes))
                for link in span.links
            ] == [(link.trace_id, link.span_id, link.attributes) for link in truth.links]
            assert dict(span.resource.attributes) == truth.resource
            assert span.instrumentation_scope is not None
            assert (span.instrumentation_scope.name, span.instrumentation_scope.version or "") == truth.scope


# -- columns ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_800_000_000_123_456_789, 1_800_000_000_123_456_789),  # ns
        ("1800000000123456789", 1_800_000_000_123_456_789),  # ns as text (quoted UInt64)
        (1_800_000_000_123_456, 1_800_000_000_123_456_000),  # µs
        (1_800_000_000_123, 1_800_000_000_123_000_000),  # ms
        (1_800_000_000, 1_800_000_000_000_000_000),  # s
        (1_800_000_000.5, 1_800_000_000_500_000_000),  # float seconds
        ("2027-01-15T08:00:00.123456", 1_800_000_000_123_456_000),  # naive = UTC, µs
        ("2027-01-15T08:00:00.123456789Z", 1_800_000_000_123_456_789),
        ("2027-01-15 08:00:00.123456789", 1_800_000_000_123_456_789),  # ClickHouse text
        ("2027-01-15T08:00:00Z", 1_800_000_000_000_000_000),
        ("2027-01-15T10:00:00.5+02:00", 1_800_000_000_500_000_000),
        ("2027-01-15T03:00:00.5-0500", 1_800_000_000_500_000_000),
        ("not a time", None),
        ("2027-13-15T08:00:00", None),
        (None, None),
        (True, None),
    ],
)
def test_timestamps_in_every_dialect(value: Any, expected: int | None) -> None:
    assert parse_timestamp(value) == expected


def test_kinds_and_statuses_in_every_dialect() -> None:
    for value in ("Server", "SERVER", "SPAN_KIND_SERVER", 2):
        assert parse_kind(value) is SpanKind.SERVER
    for value in ("Client", "SPAN_KIND_CLIENT", 3):
        assert parse_kind(value) is SpanKind.CLIENT
    # The SDK cannot express "unspecified"; such spans go out as INTERNAL.
    for value in ("Unspecified", "SPAN_KIND_UNSPECIFIED", 0, "weird", None):
        assert parse_kind(value) is SpanKind.INTERNAL
    for value in ("Error", "STATUS_CODE_ERROR", "error", 2):
        assert parse_status(value) is StatusCode.ERROR
    for value in ("Ok", "STATUS_CODE_OK", 1):
        assert parse_status(value) is StatusCode.OK
    for value in ("Unset", "", None, "bogus"):
        assert parse_status(value) is StatusCode.UNSET


def test_ids_of_either_case_and_empty_parents() -> None:
    (root,) = convert([row(ParentSpanId="")])
    assert root.parent is None
    (zeros,) = convert([row(ParentSpanId="0000000000000000")])
    assert zeros.parent is None
    (child,) = convert([row(SpanId="abcdef0123456789", ParentSpanId="00F067AA0BA902B7")])
    assert child.get_span_context().span_id == 0xABCDEF0123456789
    assert child.get_span_context().trace_id == int(TRACE, 16)
    assert child.parent is not None and child.parent.span_id == 0x00F067AA0BA902B7


def test_unreadable_rows_are_skipped_and_reported() -> None:
    rows = [row(), row(TraceId="xyz"), row(SpanId=""), row(Timestamp="yesterday"), "not a row"]
    spans, skipped = convert_rows(rows, OPEN)
    assert (len(spans), skipped) == (1, 4)


def test_events_and_links_flattened_or_as_objects() -> None:
    flattened = row(
        **{
            "Events.Timestamp": ["2027-01-15T08:00:00.2Z", 1_800_000_000_300_000_000],
            "Events.Name": ["llm_request_ms", "step_ms"],
            "Events.Attributes": [{"duration_ms": "12"}, {"duration_ms": "30"}],
            "Links.TraceId": [TRACE.lower()],
            "Links.SpanId": ["1111111111111111"],
            "Links.TraceState": ["a=b"],
            "Links.Attributes": [{"why": "previous"}],
        }
    )
    objects = row(
        Events=[
            {"Timestamp": "2027-01-15T08:00:00.2Z", "Name": "llm_request_ms",
             "Attributes": {"duration_ms": "12"}},
            {"Timestamp": 1_800_000_000_300_000_000, "Name": "step_ms", "Attributes": {"duration_ms": "30"}},
        ],
        Links=[{"TraceId": TRACE, "SpanId": "1111111111111111", "TraceState": "a=b",
                "Attributes": {"why": "previous"}}],
    )  # fmt: skip
    for span in convert([flattened]) + convert([objects]):
        assert [(e.name, e.timestamp, dict(e.attributes)) for e in span.events] == [
            ("llm_request_ms", 1_800_000_000_200_000_000, {"duration_ms": "12"}),
            ("step_ms", 1_800_000_000_300_000_000, {"duration_ms": "30"}),
        ]
        (link,) = span.links
        assert (link.context.trace_id, link.context.span_id) == (int(TRACE, 16), 0x1111111111111111)
        assert link.context.trace_state.to_header() == "a=b"
        assert dict(link.attributes) == {"why": "previous"}


def test_resource_takes_service_name_and_scope_version() -> None:
    (span,) = convert([row(ResourceAttributes={"letta.version": "0.16.8"}, ScopeVersion="1.2")])
    assert dict(span.resource.attributes) == {"letta.version": "0.16.8", "service.name": "letta-server"}
    assert span.instrumentation_scope is not None
    assert (span.instrumentation_scope.name, span.instrumentation_scope.version) == (
        "letta.otel.tracing",
        "1.2",
    )


def test_status_message_is_kept_for_errors() -> None:
    (error,) = convert([row(StatusCode="Error", StatusMessage="LLMServerError: upstream exploded")])
    assert error.status.status_code is StatusCode.ERROR
    assert error.status.description == "LLMServerError: upstream exploded"
    (ok,) = convert([row(StatusCode="Ok", StatusMessage="ignored")])
    assert ok.status.status_code is StatusCode.OK and ok.status.description is None


# -- attribute values and the policy ---------------------------------------------------------------


def test_attribute_values_keep_their_types() -> None:
    assert attribute_value("x") == "x"
    assert attribute_value(True) is True
    assert attribute_value(3) == 3 and isinstance(attribute_value(3), int)
    assert attribute_value(2.5) == 2.5
    assert attribute_value(["a", "b"]) == ("a", "b")
    assert attribute_value([1, 2]) == (1, 2)
    assert attribute_value([1, "a"]) == '[1,"a"]'  # mixed arrays are not OTel values
    assert attribute_value({"k": [1]}) == '{"k":[1]}'
    assert attribute_value(2**70) == str(2**70)
    assert attribute_value(None) is None


def test_default_denylist_keeps_request_bodies_and_arguments_out() -> None:
    policy = AttributePolicy.from_settings(Settings().trace_attribute_denylist)
    attributes = {
        "http.method": "POST",
        "http.request.body.messages": '[{"role": "user", "content": "my card is 4111..."}]',
        "parameter.agent_state": "memory: the user's address is ...",
        "parameter.tool_args": '{"to": "alice@example.com"}',
        "parameter.tool_name": "send_email",
        "step_id": "step-1",
    }
    events = {"Events.Timestamp": [1_800_000_000_000_000_000], "Events.Name": ["e"],
              "Events.Attributes": [{"parameter.x": "secret", "duration_ms": "3"}]}  # fmt: skip
    (span,) = convert([row(SpanAttributes=attributes, **events)], policy)
    assert dict(span.attributes) == {
        "http.method": "POST",
        "parameter.tool_name": "send_email",
        "step_id": "step-1",
    }
    assert dict(span.events[0].attributes) == {"duration_ms": "3"}
    assert span.dropped_attributes == 0  # denied keys are filtered on purpose, not "dropped"


def test_denylist_globs_and_exceptions() -> None:
    policy = AttributePolicy.from_settings("user.*, *.id ,!agent.id")
    attributes = {"user.id": "u", "user.email": "e", "agent.id": "a", "organization.id": "o", "http.url": "x"}
    (span,) = convert([row(SpanAttributes=attributes)], policy)
    assert dict(span.attributes) == {"agent.id": "a", "http.url": "x"}
    (span,) = convert([row(SpanAttributes=attributes)], AttributePolicy.from_settings(""))
    assert dict(span.attributes) == attributes


def test_values_are_cut_to_4096_characters_by_default() -> None:
    policy = AttributePolicy.from_settings("")
    assert policy.max_value_length == DEFAULT_VALUE_LENGTH == 4096
    (span,) = convert([row(SpanAttributes={"big": "x" * 5_000_000, "list": ["y" * 5000]})], policy)
    assert span.attributes["big"] == "x" * 4096
    assert span.attributes["list"] == ("y" * 4096,)


def test_otel_limits_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "5")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")
    monkeypatch.setenv("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "1")
    policy = AttributePolicy.from_settings("")
    attributes = {f"k{i}": f"value-{i}" for i in range(10)}
    events = {"Events.Timestamp": [1_800_000_000_000_000_000], "Events.Name": ["e"],
              "Events.Attributes": [{"a": "1", "b": "2"}]}  # fmt: skip
    (span,) = convert([row(SpanAttributes=attributes, **events)], policy)
    assert dict(span.attributes) == {"k0": "value", "k1": "value", "k2": "value"}
    assert span.dropped_attributes == 7
    assert len(span.events[0].attributes) == 1 and span.events[0].dropped_attributes == 1
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "")  # set but empty: unlimited
    assert AttributePolicy.from_settings("").max_value_length is None
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "lots")
    with pytest.raises(ValueError, match="OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"):
        AttributePolicy.from_settings("")


# -- orphans, TTFT, completeness -------------------------------------------------------------------


def orphan_rows() -> list[dict[str, Any]]:
    return [
        row(SpanId="1000000000000001", ParentSpanId="", SpanName="POST /v1/agents/a/messages"),
        row(SpanId="1000000000000002", ParentSpanId="9999999999999999", Timestamp=1_800_000_000_200_000_000),
        row(SpanId="1000000000000003", ParentSpanId="1000000000000002", Timestamp=1_800_000_000_300_000_000),
    ]


def test_orphans_keep_their_parent_by_default() -> None:
    spans = convert(orphan_rows())
    assert [span.parent.span_id if span.parent else None for span in spans] == [
        None, 0x9999999999999999, 0x1000000000000002,
    ]  # fmt: skip


def test_orphans_can_be_reparented_to_the_root() -> None:
    spans = convert(orphan_rows(), reparent=True)
    assert [span.parent.span_id if span.parent else None for span in spans] == [
        None, 0x1000000000000001, 0x1000000000000002,
    ]  # fmt: skip
    assert spans[1].attributes[ORIGINAL_PARENT_ATTRIBUTE] == "9999999999999999"
    assert ORIGINAL_PARENT_ATTRIBUTE not in spans[2].attributes
    # Without a root in the set there is nothing to attach to.
    spans = convert(orphan_rows()[1:], reparent=True)
    assert spans[0].parent is not None and spans[0].parent.span_id == 0x9999999999999999


def ttft_row(ms: Any) -> dict[str, Any]:
    events = {
        "Events.Timestamp": [1_800_000_000_000_000_000],
        "Events.Name": ["time_to_first_token_ms"],
        "Events.Attributes": [{"ttft_ms": ms}],
    }
    return row(SpanName="time_to_first_token", **events)


def test_ttft_comes_from_the_time_to_first_token_event() -> None:
    assert ttft_ns_from_rows([row(), ttft_row("427")]) == 427_000_000
    assert ttft_ns_from_rows([ttft_row(12.5)]) == 12_500_000
    assert ttft_ns_from_rows([ttft_row("n/a")]) is None
    assert ttft_ns_from_rows([row()]) is None
    assert ttft_ns_from_rows([]) is None


class Step:
    def __init__(self, trace_id: str | None) -> None:
        self.trace_id = trace_id


def test_a_trace_without_its_root_or_with_no_rows_yet_is_not_settled() -> None:
    assert trace_settled(None, [Step(TRACE)])  # not read: nothing to wait for
    assert trace_settled([], [Step(None)])  # Letta has no trace for this run
    assert not trace_settled([], [Step(TRACE)])  # the steps name one: not written yet
    assert not trace_settled(orphan_rows()[1:], [Step(TRACE)])  # the request span ends last
    assert trace_settled(orphan_rows(), [Step(TRACE)])
