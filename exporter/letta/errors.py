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

    @property
    def retryable(self) -> bool:
        return self.status == 429 or (self.status >= 500 and self.status != 501)


class LettaNotFound(LettaHTTPError):
    """404: the run (or agent) is gone, usually deleted."""


class LettaNotImplemented(LettaHTTPError):
    """501: the server lacks the feature (``/trace`` without ClickHouse)."""


class LettaMalformedResponse(LettaError):
    """A 2xx reply whose body is not the JSON shape the endpoint promises."""


class LettaTransportError(LettaError):
    """Connection refused, reset, timed out: the request never got an HTTP answer."""
