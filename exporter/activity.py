"""What the exporter has been doing, in the log at info: one line once the first poll reaches
Letta, then a summary every few minutes, so a healthy exporter is not a silent one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exporter.letta.client import LettaClient
from exporter.metrics import ExporterMetrics
from exporter.tracker import RunTracker

log = logging.getLogger("exporter")

SUMMARY_EVERY = 300.0


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

    def _figures(self) -> tuple[float, float, float]:
        runs = sum(self.metrics.totals.counters["letta_runs"].copy().values())
        return runs, self.client.requests_sent, self.client.limiter.throttled
