"""What the exporter has been doing, in the log at info: one line once the first poll reaches
Letta, then a summary every few minutes, so a healthy exporter is not a silent one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from exporter.families import RUNS
from exporter.letta.client import LettaClient
from exporter.prometheus import ExporterMetrics
from exporter.tracker import RunTracker

if TYPE_CHECKING:
    from exporter.enrichment import Enricher

log = logging.getLogger("exporter")

SUMMARY_EVERY = 300.0
# Polls in a row with finished runs waiting and none recorded before the exporter says so.
STALLED_POLLS = 5


class ActivityLog:
    def __init__(
        self,
        metrics: ExporterMetrics,
        tracker: RunTracker,
        client: LettaClient,
        *,
        every: float = SUMMARY_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.tracker = tracker
        self.client = client
        self.every = every
        self.clock = clock
        self._first_done = False
        self._last: tuple[float, float, float, float] | None = None  # when, runs, calls, 429s
        self._recorded = metrics.totals.version
        self._stalled_polls = 0

    def begin(self) -> None:
        """At the first poll's start: the figures the first summary counts from (runs restored from a
        state file already in them, runs the first poll records not yet)."""
        if self._last is None:
            self._last = (self.clock(), *self._figures())

    def after_poll(self, reached: bool, *, seen: int, agents: int) -> None:
        now = self.clock()
        if reached and not self._first_done:
            self._first_done = True
            log.info("first poll reached Letta at %s: %d runs seen, %d in flight, %d agents",
                     self.client.base_url, seen, len(self.tracker.in_flight), agents)  # fmt: skip
        if self._last is None:
            self._last = (now, *self._figures())
            return
        if now - self._last[0] < self.every:
            return
        since, runs0, calls0, throttled0 = self._last
        runs, calls, throttled = self._figures()
        oldest = self.tracker.oldest_unrecorded()
        lag = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        log.info(
            "last %.0f min: %d runs counted, %d Letta API calls (%d answered 429), request rate %.0f/s, "
            "%d runs pending, oldest unrecorded waited %.0fs",
            (now - since) / 60, runs - runs0, calls - calls0, throttled - throttled0,
            self.client.limiter.limit, len(self.tracker.pending), lag,
        )  # fmt: skip
        self._last = (now, runs, calls, throttled)

    def stalled(self, enricher: Enricher) -> bool:
        """After a poll: whether finished runs have waited ``STALLED_POLLS`` polls in a row with none
        recorded. Said once in the log when it starts, with what the waiting runs wait for, and once
        when runs are recorded again: never a silent zero."""
        tracker = self.tracker
        recorded = self.metrics.totals.version
        # Runs looking for figures Letta writes late wait a bounded while by design: not a stall.
        stuck = any(not entry.settling for entry in tracker.pending.values())
        waiting = stuck or tracker.deferred_since is not None
        if recorded != self._recorded or not waiting:
            if self._stalled_polls >= STALLED_POLLS:
                log.warning("recording runs again after %d polls without one", self._stalled_polls)
            self._recorded, self._stalled_polls = recorded, 0
            return False
        self._stalled_polls += 1
        if self._stalled_polls == STALLED_POLLS:
            log.warning("no run recorded for %d polls while %d finished runs wait: %s",
                        self._stalled_polls, len(tracker.pending), self._why(enricher))  # fmt: skip
        return self._stalled_polls >= STALLED_POLLS

    def _why(self, enricher: Enricher) -> str:
        entries = self.tracker.pending.values()
        reasons = {
            "waiting for the steps stream": len(enricher.waiting),
            "retrying failed reads": sum(1 for entry in entries if entry.failures),
            "waiting for figures Letta writes late": sum(1 for entry in entries if entry.settle_checks),
            "queued for a worker": enricher.depth,
        }
        said = ", ".join(f"{count} {what}" for what, count in reasons.items() if count) or "none read yet"
        if enricher.last_failure:
            said += f" (last failed read: {enricher.last_failure})"
        if self.tracker.deferred_since is not None:
            said += "; more wait in Letta (the pending set is full)"
        return said

    def _figures(self) -> tuple[float, float, float]:
        runs = self.metrics.totals.count(RUNS)
        return runs, self.client.requests_sent, self.client.limiter.throttled
