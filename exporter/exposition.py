"""The /metrics body, rendered once per poll instead of once per scrape.

prometheus-client renders roughly 8 µs per sample: 100k series take most of a second, on every
scrape, and every Prometheus replica scrapes. The numbers change only as runs are recorded, so they
are rendered (off the event loop) after each poll and, while a rendering is cheap, as runs are
recorded between polls; scrapes are served the stored bytes (gzipped once, for the first scrape
that asks). A rendering runs on a thread while the event loop records, so it can catch a run in one
family and not yet in the next; the following rendering has it everywhere.

Rendering holds the GIL, so for very large registries it is also rationed: a render starts only
once the time since the last one is at least ``1 / max_duty - 1`` times what that one took (with
the default 0.05, rendering uses at most a twentieth of the time). The run-outcome totals, nearly
all the series, are rendered incrementally (``totals.TotalsText``): 115k series take about 25 ms
here when the last rendering is kept, against 150 ms from scratch.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

CHUNK_BYTES = 256 * 1024


class Rendered:
    """One rendering, kept in the pieces it was made of: the run totals' pieces are shared with
    their renderer's cache, so a rendering adds no copy of a text that runs to tens of megabytes
    with thousands of agents. Gzipped on the first scrape that asks for it (Prometheus does, a
    person with curl does not), then kept."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.length = sum(map(len, parts))
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The text in pieces of about ``size`` bytes, for writing to a socket."""
        group: list[bytes] = []
        have = 0
        for part in self.parts:
            group.append(part)
            have += len(part)
            if have >= size:
                yield b"".join(group)
                group, have = [], 0
        if group:
            yield b"".join(group)

    @property
    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzipped is None:
                packer = zlib.compressobj(1, wbits=31)  # gzip framing, as gzip.compress(level 1)
                packed = [packer.compress(chunk) for chunk in self.chunks()]
                self._gzipped = b"".join([*packed, packer.flush()])
            return self._gzipped


class Exposition:
    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        registry: CollectorRegistry,
        max_duty: float = 0.05,
        extra: Callable[[], list[bytes]] | None = None,  # pieces of text, appended to the registry's
    ) -> None:
        self.registry = registry
        self.extra = extra
        self.max_duty = max_duty
        self._rendered: Rendered | None = None
        self._task: asyncio.Task[Rendered] | None = None
        self._lock = threading.Lock()
        self._rendering = threading.Lock()
        self._last_end = float("-inf")
        self._last_took = 0.0

    @property
    def last_took(self) -> float:
        """CPU seconds the last rendering took."""
        return self._last_took

    def due(self) -> bool:
        rest = self._last_took * (1 / self.max_duty - 1)
        return time.monotonic() - self._last_end >= rest

    async def refresh_soon(self) -> bool:
        """Start a rendering on a thread unless one is under way or it is not due yet (never waited
        for by a poll); whether it started."""
        if (self._task is not None and not self._task.done()) or not self.due():
            return False
        self._task = asyncio.create_task(asyncio.to_thread(self.refresh))
        return True

    def refresh(self) -> Rendered:
        """Render now (a worker thread's job: it takes a while for big registries)."""
        with self._rendering:  # one at a time: ``extra`` keeps what it wrote for the next
            # The thread's CPU time, not the wall time: that is what holds the GIL, and a
            # rendering waiting for the busy event loop would otherwise look costly.
            started = time.thread_time()
            parts = [generate_latest(self.registry)]
            if self.extra is not None:
                parts += self.extra()
            rendered = Rendered(parts)
            took = time.thread_time() - started
        with self._lock:
            self._rendered = rendered
        self._last_end = time.monotonic()
        self._last_took = took
        return rendered

    def current(self) -> Rendered:
        """The last poll's rendering; before the first poll ends, a fresh one."""
        with self._lock:
            rendered = self._rendered
        return rendered if rendered is not None else self.refresh()
