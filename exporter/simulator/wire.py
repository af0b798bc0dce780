"""Requests and answers as FastAPI + pydantic would make them: query parameters checked with their
422 errors collected in order, JSON bodies encoded as Starlette does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from exporter.simulator import shapes

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    # Starlette's JSONResponse encoding: compact, UTF-8.
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, data, headers=headers)


class Params:
    """Query parameters checked the way FastAPI + pydantic check them, errors collected in order."""

    def __init__(self, query: str) -> None:
        self.values = parse_qs(query, keep_blank_values=True)
        self.errors: list[dict[str, Any]] = []

    def reject(self, kind: str, name: str, raw: str, msg: str, ctx: dict[str, Any] | None = None) -> None:
        """Record a FastAPI-style validation error for the 422 body."""
        error: dict[str, Any] = {"type": kind, "loc": ("query", name), "msg": msg, "input": raw}
        if ctx is not None:
            error["ctx"] = ctx
        self.errors.append(error)

    def last(self, name: str) -> str | None:
        # FastAPI takes the last value of a repeated scalar parameter.
        values = self.values.get(name)
        return values[-1] if values else None

    def cursors(self) -> dict[str, str | None]:
        """``before`` and ``after``, as every cursor-paged list takes them."""
        return {"before": self.last("before"), "after": self.last("after")}

    def all(self, name: str) -> list[str] | None:
        return self.values.get(name)

    def boolean(self, name: str, default: bool | None) -> bool | None:
        raw = self.last(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        self.reject("bool_parsing", name, raw, "Input should be a valid boolean, unable to interpret input")
        return default

    def integer(self, name: str, default: int, *, ge: int | None = None, le: int | None = None) -> int:
        raw = self.last(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self.reject(
                "int_parsing",
                name,
                raw,
                "Input should be a valid integer, unable to parse string as an integer",
            )
            return default
        if ge is not None and value < ge:
            self.reject(
                "greater_than_equal", name, raw, f"Input should be greater than or equal to {ge}", {"ge": ge}
            )
        elif le is not None and value > le:
            self.reject(
                "less_than_equal", name, raw, f"Input should be less than or equal to {le}", {"le": le}
            )
        return value

    def order(self) -> bool:
        """True for descending (the default)."""
        raw = self.last("order")
        if raw is None or raw == "desc":
            return True
        if raw == "asc":
            return False
        expected = "'asc' or 'desc'"
        self.reject("literal_error", "order", raw, f"Input should be {expected}", {"expected": expected})
        return True

    def stop_reason(self) -> str | None:
        raw = self.last("stop_reason")
        if raw is None or raw in shapes.STOP_REASONS:
            return raw
        expected = shapes.stop_reason_expected()
        self.reject("enum", "stop_reason", raw, f"Input should be {expected}", {"expected": expected})
        return None

    def moment(self, name: str) -> int | None:
        """An ISO datetime with a time zone (pydantic's AwareDatetime), in µs since the epoch."""
        raw = self.last(name)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            self.reject("datetime_parsing", name, raw, "Input should be a valid datetime, invalid format")
            return None
        if value.tzinfo is None:
            self.reject("timezone_aware", name, raw, "Input should have timezone info")
            return None
        return shapes.to_us(value)

    def parsed_moments(self, *names: str) -> list[int | None] | Response:
        """Dates a router takes as strings and parses itself with ``datetime.fromisoformat`` (a zone
        optional, UTC when absent): a bad one is a ValueError, which Letta answers 400."""
        moments: list[int | None] = []
        for name in names:
            raw = self.last(name)
            try:
                value = datetime.fromisoformat(raw) if raw else None
            except ValueError as exc:
                return json_response(400, {"detail": str(exc)})
            moments.append(None if value is None else shapes.to_us(value.replace(tzinfo=value.tzinfo or UTC)))
        return moments

    def invalid(self) -> Response | None:
        return json_response(422, shapes.validation_error(self.errors)) if self.errors else None
