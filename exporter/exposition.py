"""The /metrics body, rendered once per poll instead of once per scrape.

prometheus-client renders roughly 8 µs per sample: 100k series take most of a second, on every
scrape, and every Prometheus replica scrapes. The numbers only change when a poll ends, so the
poll renders them (off the event loop) and scrapes are served the stored bytes, plain or gzipped.
A side effect worth having: a scrape always sees a whole poll's worth of changes, never half.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


@dataclass(frozen=True)
class Rendered:
    text: bytes
    gzipped: bytes


class Exposition:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._rendered: Rendered | None = None
        self._lock = threading.Lock()

    def refresh(self) -> Rendered:
        """Render now (a worker thread's job: it takes a while for big registries)."""
        text = generate_latest(self.registry)
        rendered = Rendered(text, gzip.compress(text, compresslevel=1))
        with self._lock:
            self._rendered = rendered
        return rendered

    def current(self) -> Rendered:
        """The last poll's rendering; before the first poll ends, a fresh one."""
        with self._lock:
            rendered = self._rendered
        return rendered if rendered is not None else self.refresh()
