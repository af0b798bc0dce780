"""What Letta's rows and synthesised traces share on their way to OTLP: IDs, attribute values, and
the attribute policy (deny list, value-length and count limits).

Spans are built as the SDK's ``ReadableSpan``, the type its OTLP exporters encode, so the trace and
span IDs, parents and timestamps given here are exactly the ones sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

# Letta records whole request bodies and method arguments (the agent's memory, tool arguments: MBs of
# user data) as attributes. Without an explicit OTel limit, values are cut to this many characters.
DEFAULT_VALUE_LENGTH = 4096
VALUE_LENGTH_ENV = ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TRACE_ID_HEX, SPAN_ID_HEX = 32, 16
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def hex_id(value: Any, width: int) -> int | None:
    """An ID from ``width`` hex digits of either case (``0x`` allowed); ``None`` when empty, all
    zeros (OTel's "no ID") or not an ID at all."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower().removeprefix("0x")
    if len(text) != width:
        return None
    try:
        number = int(text, 16)
    except ValueError:
        return None
    return number or None


def steps_trace_id(steps: Iterable[Any] | None) -> int | None:
    """The trace ID a run's steps name, where Letta traced the run."""
    return next(filter(None, (hex_id(step.trace_id, TRACE_ID_HEX) for step in steps or ())), None)


def attribute_value(value: Any) -> Any:
    """A JSON value as an OTel attribute value: scalars kept with their type, homogeneous lists of
    scalars as arrays, anything else (objects, mixed lists, huge ints) as its JSON text."""
    if value is None:
        return None
    if isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, list | tuple):
        items = [item for item in value if item is not None]
        kinds = {type(item) for item in items}
        in_range = kinds != {int} or all(INT64_MIN <= item <= INT64_MAX for item in items)
        if len(kinds) <= 1 and kinds <= {str, bool, int, float} and in_range:
            return tuple(items)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _truncate(value: Any, limit: int | None) -> Any:
    if limit is None:
        return value
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, tuple):
        return tuple(item[:limit] if isinstance(item, str) else item for item in value)
    return value


@dataclass(frozen=True)
class AttributePolicy:
    """Which attribute keys leave the exporter, and how much of them.

    ``deny`` and ``allow`` are glob patterns (``*``, ``?``) over attribute keys; an allow pattern
    (written ``!pattern`` in the setting) wins over a deny pattern. The count limits are the OTel
    SDK's span limits, as it reads them from ``OTEL_*_COUNT_LIMIT``; ``None`` means unlimited."""

    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    max_value_length: int | None = DEFAULT_VALUE_LENGTH
    limits: SpanLimits = field(default_factory=SpanLimits)
    _verdicts: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, denylist: str) -> AttributePolicy:
        """The deny list from the setting, limits from the standard ``OTEL_*_LIMIT`` variables as the
        SDK reads them; but where no value-length variable is set, DEFAULT_VALUE_LENGTH."""
        limits = SpanLimits()  # raises ValueError naming a variable that is not a whole number
        explicit = any(name in os.environ for name in VALUE_LENGTH_ENV)
        length = limits.max_span_attribute_length if explicit else DEFAULT_VALUE_LENGTH
        deny, allow = parse_denylist(denylist)
        return cls(deny, allow, length, limits)

    def allowed(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = any(fnmatchcase(key, p) for p in self.allow) or not any(
                fnmatchcase(key, p) for p in self.deny
            )
            if len(self._verdicts) < 10_000:  # keys repeat across spans; the cache stays bounded
                self._verdicts[key] = verdict
        return verdict

    def attributes(self, values: Mapping[str, Any], limit: int | None) -> BoundedAttributes:
        """Keys past the deny list, values (bar ``None``) converted and cut, the first ``limit`` kept;
        what the count limit cut is reported as the OTLP ``dropped_attributes_count``."""
        kept: dict[str, Any] = {}
        dropped = 0
        for key, raw in values.items():
            if not isinstance(key, str) or not key or not self.allowed(key):
                continue
            value = attribute_value(raw)
            if value is None:
                continue
            if limit is not None and len(kept) >= limit:
                dropped += 1
                continue
            kept[key] = _truncate(value, self.max_value_length)
        bounded = BoundedAttributes(attributes=kept, immutable=True)
        bounded.dropped = dropped
        return bounded


def parse_denylist(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``"a.*,!a.keep"`` → (deny patterns, allow patterns)."""
    patterns = [part.strip() for part in text.split(",")]
    allow = tuple(p[1:].strip() for p in patterns if p.startswith("!") and p[1:].strip())
    return tuple(p for p in patterns if p and not p.startswith("!")), allow


@dataclass(frozen=True)
class EventData:
    name: str
    timestamp: int
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class LinkData:
    trace_id: int
    span_id: int
    trace_state: str
    attributes: Mapping[str, Any]


@dataclass
class SpanData:
    """One span as plain data, before the policy is applied."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start: int
    end: int
    kind: SpanKind = SpanKind.INTERNAL
    status: StatusCode = StatusCode.UNSET
    status_message: str = ""
    trace_state: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[EventData] = field(default_factory=list)
    links: list[LinkData] = field(default_factory=list)


def _context(trace_id: int, span_id: int, trace_state: str = "", *, remote: bool = False) -> SpanContext:
    # The SDK logs an unreadable trace state and makes it empty.
    state = TraceState.from_header([trace_state]) if trace_state else None
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=SAMPLED, trace_state=state)


def build_span(
    data: SpanData, resource: Resource, scope: InstrumentationScope | None, policy: AttributePolicy
) -> ReadableSpan:
    limits = policy.limits
    events = (
        Event(event.name, policy.attributes(event.attributes, limits.max_event_attributes), event.timestamp)
        for event in data.events
    )
    links = (
        Link(
            _context(link.trace_id, link.span_id, link.trace_state, remote=True),
            policy.attributes(link.attributes, limits.max_link_attributes),
        )
        for link in data.links
    )
    # The SDK keeps a status description only for ERROR (and warns otherwise).
    description = (data.status_message or None) if data.status is StatusCode.ERROR else None
    return ReadableSpan(
        name=data.name,
        context=_context(data.trace_id, data.span_id, data.trace_state),
        parent=_context(data.trace_id, data.parent_id) if data.parent_id is not None else None,
        resource=resource,
        attributes=policy.attributes(data.attributes, limits.max_span_attributes),
        events=BoundedList.from_seq(limits.max_events, events),
        links=BoundedList.from_seq(limits.max_links, links),
        kind=data.kind,
        status=Status(data.status, description),
        start_time=data.start,
        end_time=max(data.end, data.start),
        instrumentation_scope=scope,
    )
