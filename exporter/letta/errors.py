"""Errors the Letta client raises once its retries are spent."""

from __future__ import annotations


class LettaError(Exception):
    """Any failure to read from Letta. ``endpoint`` is the operation name, never a URL with secrets."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint


class LettaHTTPError(LettaError):
    def __init__(self, endpoint: str, status: int, detail: str) -> None:
        super().__init__(endpoint, f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


# FastAPI's body for a path no route matches; Letta's own 404s name what they did not find.
UNKNOWN_ROUTE_DETAIL = "Not Found"


class LettaNotFound(LettaHTTPError):
    """404: the thing asked for is not there. For a run, usually deleted; for a run's sub-resource,
    either that run lacks it or the server lacks the endpoint (``unknown_route``)."""

    @property
    def unknown_route(self) -> bool:
        return self.detail == UNKNOWN_ROUTE_DETAIL


class LettaNotImplemented(LettaHTTPError):
    """501: the server lacks the feature (``/trace`` without ClickHouse)."""


class LettaMalformedResponse(LettaError):
    """A 2xx reply whose body is not the JSON shape the endpoint promises."""


class PagingError(LettaMalformedResponse):
    """Neither cursor parameter moved a list past its cursor row: the server ignores list cursors."""


class LettaTransportError(LettaError):
    """Connection refused, reset, timed out: the request never got an HTTP answer."""

    def __init__(self, endpoint: str, message: str, *, timed_out: bool = False) -> None:
        super().__init__(endpoint, message)
        self.timed_out = timed_out


# Why a poll could not reach Letta: the values of letta_exporter_poll_failures_total{reason}.
FAILURE_REASONS = (
    "unauthorized", "unreachable", "timeout", "rate_limited", "server_error", "client_error",
    "malformed", "paging", "internal",
)  # fmt: skip


def failure_reason(exc: BaseException) -> str:
    match exc:
        case LettaHTTPError(status=401 | 403):
            return "unauthorized"
        case LettaHTTPError(status=429):
            return "rate_limited"
        case LettaHTTPError(status=status) if status >= 500:
            return "server_error"
        case LettaHTTPError():
            return "client_error"
        case LettaTransportError(timed_out=True):
            return "timeout"
        case LettaTransportError():
            return "unreachable"
        case PagingError():
            return "paging"
        case LettaMalformedResponse():
            return "malformed"
    return "internal"


def explain(exc: BaseException, *, base_url: str, key_set: bool) -> str:
    """One line an operator can act on: what failed, where, and which setting to look at."""
    if failure_reason(exc) == "unauthorized" and isinstance(exc, LettaHTTPError):
        if not key_set:
            return (f"Letta at {base_url} wants an API key (HTTP {exc.status}) and none is set: "
                    "set LETTA_API_KEY or LETTA_API_KEY_FILE")  # fmt: skip
        return (f"Letta at {base_url} refused the API key (HTTP {exc.status}): check LETTA_API_KEY "
                f"(or LETTA_API_KEY_FILE) and that the key may read runs [{exc}]")  # fmt: skip
    if isinstance(exc, LettaTransportError):
        return str(exc)  # names host and port already
    if isinstance(exc, LettaError):
        return f"Letta at {base_url}: {exc}"
    return f"{type(exc).__name__}: {exc}"
