"""The /metrics body, rendered once per poll instead of once per scrape.

prometheus-client renders roughly 8 µs per sample: 100k series take most of a second, on every
scrape, and every Prometheus replica scrapes. The numbers only change when a poll ends, so the
poll renders them (off the event loop) and scrapes are served the stored bytes, plain or gzipped.
A side effect worth having: a scrape always sees a whole poll's worth of changes, never half.

Rendering holds the GIL, so for very large registries it is also rationed: a render starts only
once the time since the last one is at least ``1 / max_duty - 1`` times what that one took (with
the default 0.05, rendering uses at most a twentieth of the time). A small registry renders after
every poll; 100k series (about 0.75 s here) are refreshed every 15 s or so, about as often as
Prometheus scrapes.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


@dataclass(frozen=True)
class Rendered:
    text: bytes
    gzipped: bytes


class Exposition:
    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, registry: CollectorRegistry, max_duty: float = 0.05, extra: Callable[[], str] | None = None
    ) -> None:
        self.registry = registry
        self.extra = extra  # text rendered by its owner, appended to the registry's
        self.max_duty = max_duty
        self._rendered: Rendered | None = None
        self._lock = threading.Lock()
        self._last_end = float("-inf")
        self._last_took = 0.0

    @property
    def last_took(self) -> float:
        """Seconds the last rendering took."""
        return self._last_took

    def due(self) -> bool:
        rest = self._last_took * (1 / self.max_duty - 1)
        return time.monotonic() - self._last_end >= rest

    def refresh(self) -> Rendered:
        """Render now (a worker thread's job: it takes a while for big registries)."""
        started = time.monotonic()
        text = generate_latest(self.registry)
        if self.extra is not None:
            text += self.extra().encode()
        rendered = Rendered(text, gzip.compress(text, compresslevel=1))
        with self._lock:
            self._rendered = rendered
        self._last_end = time.monotonic()
        self._last_took = self._last_end - started
        return rendered

    def current(self) -> Rendered:
        """The last poll's rendering; before the first poll ends, a fresh one."""
        with self._lock:
            rendered = self._rendered
        return rendered if rendered is not None else self.refresh()
