"""Letta's ``/trace`` rows (ClickHouse ``otel_traces`` columns) back into OpenTelemetry spans.

Everything the row holds is kept: trace, span and parent IDs, name, kind, start and end to the
nanosecond, status, attributes, events, links, resource (``ServiceName`` + ``ResourceAttributes``)
and instrumentation scope. Rows come in more than one dialect, all accepted:

- ``Timestamp`` as an ISO string (``T`` or space, 0-9 fraction digits, ``Z``/offset or none = UTC)
  or as an integer (nanoseconds; smaller magnitudes are read as µs, ms or s);
- IDs as hex of either case; an empty or all-zero ``ParentSpanId`` means a root span;
- ``SpanKind``/``StatusCode`` as the collector writes them (``Server``, ``Error``), as the proto
  names them (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``) or as the proto numbers;
- events and links as the flattened ``Events.Timestamp``/``Events.Name``/``Events.Attributes``
  arrays (ClickHouse ``Nested``), or as a list of objects under ``Events``/``Links``.

A row without a usable trace ID, span ID or timestamp cannot become a span; it is skipped and
reported to the caller.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import zip_longest
from typing import Any, TypeVar

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

from exporter.traces.spans import (
    SPAN_ID_HEX,
    TRACE_ID_HEX,
    AttributePolicy,
    EventData,
    LinkData,
    SpanData,
    attribute_value,
    build_span,
    hex_id,
    steps_trace_id,
)

TTFT_SPAN = "time_to_first_token"
TTFT_EVENT = "time_to_first_token_ms"
TTFT_ATTRIBUTE = "ttft_ms"
ORIGINAL_PARENT_ATTRIBUTE = "letta.original_parent_span_id"

_ISO = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*"
    r"(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)?\s*$"
)
# By name and by OTLP number. OTLP numbers kinds 1 (internal) to 5 (consumer), 0 being unspecified;
# the SDK's enum counts from 0. Status codes have OTLP's numbers (unset, ok, error).
_KINDS = {kind.name: kind for kind in SpanKind} | {kind.value + 1: kind for kind in SpanKind}
_STATUSES = {code.name: code for code in StatusCode} | {code.value: code for code in StatusCode}
_EVENT_COLUMNS = ("Timestamp", "Name", "Attributes")
EnumT = TypeVar("EnumT", SpanKind, StatusCode)


# -- columns -------------------------------------------------------------------------------------


def _scaled_ns(number: int) -> int:
    """An epoch timestamp of unknown unit, by magnitude (valid for dates 1973..2286)."""
    magnitude = abs(number)
    if magnitude >= 10**17:
        return number
    if magnitude >= 10**14:
        return number * 1_000
    if magnitude >= 10**11:
        return number * 1_000_000
    return number * 1_000_000_000


def parse_timestamp(value: Any) -> int | None:
    """Nanoseconds since the epoch, or ``None`` when ``value`` is not a timestamp."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return _scaled_ns(value)
    if isinstance(value, float):
        return _scaled_ns(int(value)) if abs(value) >= 10**11 else round(value * 1e9)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit():
        return _scaled_ns(int(text))
    match = _ISO.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, zone_hours, zone_minutes = match.groups()
    fields = (int(year), int(month), int(day), int(hour), int(minute), int(second))
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60):
        return None
    seconds = calendar.timegm((*fields, 0, 0, 0))
    if sign:
        offset = int(zone_hours) * 3600 + int(zone_minutes or 0) * 60
        seconds += offset if sign == "-" else -offset
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def row_duration_ns(value: Any) -> int:
    """``Duration`` in nanoseconds: an integer, or its decimal text (ClickHouse quotes UInt64)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return max(0, int(value)) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _parse_enum(value: Any, table: Mapping[str | int, EnumT], prefix: str, default: EnumT) -> EnumT:
    if isinstance(value, str):
        return table.get(value.strip().upper().removeprefix(prefix), default)
    return table.get(value, default) if isinstance(value, int) and not isinstance(value, bool) else default


def parse_kind(value: Any) -> SpanKind:
    """The SDK has no "unspecified" kind; such spans (and unknown kinds) are sent as INTERNAL."""
    return _parse_enum(value, _KINDS, "SPAN_KIND_", SpanKind.INTERNAL)


def parse_status(value: Any) -> StatusCode:
    return _parse_enum(value, _STATUSES, "STATUS_CODE_", StatusCode.UNSET)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _nested(row: Mapping[str, Any], name: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The records of a ClickHouse ``Nested`` column, flattened (``Events.Name``, ...) or not
    (``Events``: a list of objects with those keys)."""
    whole = row.get(name)
    if isinstance(whole, list):
        return [item for item in whole if isinstance(item, Mapping)]
    arrays = [row.get(f"{name}.{column}") for column in columns]
    lists = [array if isinstance(array, list) else [] for array in arrays]
    return [dict(zip(columns, values, strict=True)) for values in zip_longest(*lists)]


def _events(row: Mapping[str, Any]) -> list[EventData]:
    events = []
    for record in _nested(row, "Events", _EVENT_COLUMNS):
        timestamp = parse_timestamp(record.get("Timestamp"))
        if timestamp is None:
            continue
        events.append(EventData(_text(record.get("Name")), timestamp, _mapping(record.get("Attributes"))))
    return events


def _links(row: Mapping[str, Any]) -> list[LinkData]:
    links = []
    for record in _nested(row, "Links", ("TraceId", "SpanId", "TraceState", "Attributes")):
        trace_id = hex_id(record.get("TraceId"), TRACE_ID_HEX)
        span_id = hex_id(record.get("SpanId"), SPAN_ID_HEX)
        if trace_id is None or span_id is None:
            continue
        links.append(
            LinkData(trace_id, span_id, _text(record.get("TraceState")), _mapping(record.get("Attributes")))
        )
    return links


# -- rows ----------------------------------------------------------------------------------------


def parse_row(row: Mapping[str, Any]) -> SpanData | None:
    """The row's span, bar its resource and scope; ``None`` without a trace ID, span ID or start."""
    trace_id = hex_id(row.get("TraceId"), TRACE_ID_HEX)
    span_id = hex_id(row.get("SpanId"), SPAN_ID_HEX)
    start = parse_timestamp(row.get("Timestamp"))
    if trace_id is None or span_id is None or start is None:
        return None
    return SpanData(
        name=_text(row.get("SpanName")),
        trace_id=trace_id,
        span_id=span_id,
        parent_id=hex_id(row.get("ParentSpanId"), SPAN_ID_HEX),
        start=start,
        end=start + row_duration_ns(row.get("Duration")),
        kind=parse_kind(row.get("SpanKind")),
        status=parse_status(row.get("StatusCode")),
        status_message=_text(row.get("StatusMessage")),
        trace_state=_text(row.get("TraceState")),
        attributes=dict(_mapping(row.get("SpanAttributes"))),
        events=_events(row),
        links=_links(row),
    )


def _resource_items(row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    resource = {key: attribute_value(value) for key, value in _mapping(row.get("ResourceAttributes")).items()}
    service = _text(row.get("ServiceName"))
    if service and "service.name" not in resource:
        resource["service.name"] = service
    return tuple((k, v) for k, v in resource.items() if isinstance(k, str) and v is not None)


@lru_cache(maxsize=1000)
def _resource(items: tuple[tuple[str, Any], ...], limit: int | None) -> Resource:
    """Built once per distinct resource: each span building its own took about 15 % longer."""
    return Resource({k: (v[:limit] if isinstance(v, str) and limit is not None else v) for k, v in items})


def reparent_orphans(spans: Sequence[SpanData]) -> None:
    """Point spans whose parent is not in the set at the trace's root span, keeping the original
    parent ID in ``letta.original_parent_span_id``. Without a root in the set nothing changes."""
    roots = [span for span in spans if span.parent_id is None]
    if not roots:
        return
    root = min(roots, key=lambda span: span.start)
    present = {span.span_id for span in spans}
    for span in spans:
        if span.parent_id is not None and span.parent_id not in present and span is not root:
            span.attributes[ORIGINAL_PARENT_ATTRIBUTE] = f"{span.parent_id:016x}"
            span.parent_id = root.span_id


def convert_rows(
    rows: Iterable[Any], policy: AttributePolicy, *, reparent: bool = False
) -> tuple[list[ReadableSpan], int]:
    """(spans, rows skipped because they could not be read)."""
    rows = list(rows)
    read = [(row, span) for row in rows if isinstance(row, Mapping) and (span := parse_row(row)) is not None]
    if reparent:
        reparent_orphans([span for _, span in read])
    spans = [
        build_span(
            span,
            _resource(_resource_items(row), policy.max_value_length),
            InstrumentationScope(_text(row.get("ScopeName")), _text(row.get("ScopeVersion")) or None),
            policy,
        )
        for row, span in read
    ]
    return spans, len(rows) - len(read)


def trace_settled(rows: Sequence[Any] | None, steps: Sequence[Any] | None) -> bool:
    """Does ``rows`` look like the run's whole trace? Letta's spans reach trace storage in batches,
    so just after a run ends its trace can be missing (``[]`` although the steps name a trace ID)
    or partial (no root span yet: the request span ends last). ``None`` (not read) is settled."""
    if rows is None:
        return True
    if not rows:
        return steps_trace_id(steps) is None
    return any(
        isinstance(row, Mapping)
        and hex_id(row.get("SpanId"), SPAN_ID_HEX) is not None
        and hex_id(row.get("ParentSpanId"), SPAN_ID_HEX) is None
        for row in rows
    )


def ttft_ns_from_rows(rows: Iterable[Mapping[str, Any]]) -> int | None:
    """Time to first token from the ``time_to_first_token`` span's ``time_to_first_token_ms`` event
    (attribute ``ttft_ms``, milliseconds), where Letta recorded one."""
    for row in rows:
        if not isinstance(row, Mapping) or row.get("SpanName") != TTFT_SPAN:
            continue
        for record in _nested(row, "Events", _EVENT_COLUMNS):
            if record.get("Name") != TTFT_EVENT:
                continue
            raw = _mapping(record.get("Attributes")).get(TTFT_ATTRIBUTE)
            try:
                ms = float(raw)
            except (TypeError, ValueError):
                continue
            if not isinstance(raw, bool) and 0 <= ms < 1e12:
                return round(ms * 1_000_000)
    return None
