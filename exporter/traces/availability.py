"""Whether Letta can answer ``/trace`` at all.

A server without trace storage (ClickHouse; the self-hosted default) answers 501 for every run. After
the first 501 the exporter stops asking per run, says so once, and lets one run probe again every
``probe_interval`` seconds; the first probe that gets an answer turns per-run reads back on. Until
the first answer, one run asks and the others wait for it, so a server without trace storage costs
one request, not one per enrichment worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import Enum

log = logging.getLogger(__name__)


class Claim(Enum):
    READ = "read"
    SKIP = "skip"  # no trace storage: go on without rows


class TraceAvailability:
    def __init__(self, probe_interval: float) -> None:
        self.probe_interval = probe_interval
        self.clock: Callable[[], float] = time.monotonic
        self.available = True
        self._answered = False  # has /trace answered (rows or 501) at all yet?
        self._first_read: asyncio.Event | None = None  # the first read under way; set when it ends
        self._next_probe = 0.0

    async def claim(self) -> Claim:
        """May this run read ``/trace`` now? Until it has answered once, one run asks and the others
        wait for that read to end; while storage is unavailable, one caller per interval may: it is
        the probe. Nothing is awaited between a check and its claim, so two runs cannot both claim."""
        while not self._answered:
            if self._first_read is None:
                self._first_read = asyncio.Event()
                return Claim.READ
            await self._first_read.wait()
        if self.available:
            return Claim.READ
        now = self.clock()
        if now < self._next_probe:
            return Claim.SKIP
        self._next_probe = now + self.probe_interval
        return Claim.READ

    def _first_read_ended(self) -> None:
        if self._first_read is not None:
            self._first_read.set()
            self._first_read = None

    def unavailable(self, detail: str = "") -> None:
        """A 501: no trace storage. Logged when it starts, not for every probe after."""
        self._answered = True
        self._first_read_ended()
        if self.available:
            log.warning(
                "Letta has no trace storage (/trace answered 501%s); not asking per run, probing "
                "every %.0fs; runs get synthesised traces meanwhile",
                f": {detail}" if detail else "", self.probe_interval,
            )  # fmt: skip
            self.available = False
        self._next_probe = self.clock() + self.probe_interval

    def answered(self) -> None:
        """``/trace`` answered: storage is there (again)."""
        self._answered = True
        self._first_read_ended()
        if not self.available:
            log.info("Letta's /trace answers again; reading each run's trace")
        self.available = True

    def probe_failed(self) -> None:
        """The probe met a transient error, which says nothing about storage: probe again soon."""
        self._first_read_ended()
        if not self.available:
            self._next_probe = self.clock()
