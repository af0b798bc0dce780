"""Log set-up: plain text for people, JSON lines for machines, and a last guard against secrets."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class RedactingHandler(logging.StreamHandler):
    """Writes log lines to stderr with any secret that slipped into one (a key echoed in an upstream
    error body, say) replaced: the whole line, so message, traceback and extra fields alike."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(sys.stderr)
        self.secrets: set[str] = set()
        for secret in secrets:
            if len(secret) >= 4:  # as written in a text line, and escaped inside a JSON string
                self.secrets |= {secret, json.dumps(secret)[1:-1]}

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, fmt: str, secrets: list[str]) -> None:
    handler = RedactingHandler(secrets)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; our own request metrics say the same with less noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is ticks not overlapping, by design.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
