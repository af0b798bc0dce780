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
    WAIT = "wait"  # the first answer is still coming: ask again in a moment


class TraceAvailability:
    def __init__(self, probe_interval: float) -> None:
        self.probe_interval = probe_interval
        self.clock: Callable[[], float] = time.monotonic
        self.available = True
        self._answered = False  # has /trace answered (rows or 501) at all yet?
        self._asking = False  # a first read is under way
        self._next_probe = 0.0
        self._settled: asyncio.Event | None = None  # set when the first read ends, either way

    async def claim_soon(self) -> Claim:
        """``claim``, waiting out a first read under way instead of answering WAIT."""
        while (claim := self.claim()) is Claim.WAIT:
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()
        return claim

    def _first_read_ended(self) -> None:
        self._asking = False
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    def claim(self) -> Claim:
        """May this run read ``/trace`` now? While storage is unavailable, one caller per interval
        may: it is the probe. Synchronous, so concurrent enrichments cannot both claim."""
        if not self._answered:
            if self._asking:
                return Claim.WAIT
            self._asking = True
            return Claim.READ
        if self.available:
            return Claim.READ
        now = self.clock()
        if now < self._next_probe:
            return Claim.SKIP
        self._next_probe = now + self.probe_interval
        return Claim.READ

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
