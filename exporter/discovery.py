"""Discovery: which runs exist and which have finished, read from Letta's run lists each poll.

Two reads a poll. ``discover`` pages the run list newest first down to the horizon (the newest run
handled minus the overlap window), so runs that became visible late, with an older ``created_at``,
are still found; ``track`` reads the active list for the live gauges and for runs that left it
unseen. Finished runs are admitted to the tracker oldest first, and when its pending set is full
the rest stay in Letta: the watermark stops short of them, and a later poll reads them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaError, LettaNotFound
from exporter.letta.models import Run
from exporter.metrics import ExporterMetrics
from exporter.tracker import RunTracker, Seen, created_ts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveryOptions:
    page_size: int = 100
    concurrency: int = 4
    backfill: float = 0.0
    max_active_pages: int = 50
    max_in_flight_age: float = 86400.0


class Discovery:
    def __init__(
        self,
        client: LettaClient,
        tracker: RunTracker,
        metrics: ExporterMetrics,
        options: DiscoveryOptions,
        *,
        admit: Callable[[str], None],
    ) -> None:
        self.client = client
        self.tracker = tracker
        self.metrics = metrics
        self.options = options
        self.admit = admit  # called with each run admitted for enrichment
        self.started_at = time.time()
        self.baselined = False
        self._semaphore = asyncio.Semaphore(options.concurrency)
        self._missing_last_tick: set[str] = set()
        # Finished runs the last discovery listed but left in Letta (backpressure): not "gone".
        self._waiting: set[str] = set()
        # What the last discovery read (every row of its pages): for the log's first-poll line.
        self.seen = 0
        self.agents: set[str] = set()
        self.skipped = False  # the last discovery was skipped: see ``behind``

    @property
    def behind(self) -> bool:
        """The last discovery left runs in Letta and the workers have not yet drained half the
        pending set: a discovery now could admit little, and listing the backlog again (newest
        first, down to the watermark) every poll would spend the CPU the workers need."""
        tracker = self.tracker
        return tracker.deferred_since is not None and len(tracker.pending) > tracker.capacity // 2

    async def discover(self) -> None:
        self.skipped = self.behind
        if self.skipped:
            return
        tracker = self.tracker
        first = not self.baselined
        horizon = tracker.horizon
        # "Start at now" means at process start, not at the first poll that succeeds: runs created
        # after start-up count even when Letta was unreachable at first.
        count_from = self.started_at - self.options.backfill
        listed: list[tuple[float, Run]] = []  # newest first, down to the horizon
        self.seen, self.agents = 0, set()
        try:
            async for page in self.client.iter_runs(page_size=self.options.page_size, known=tracker.is_known):
                if first and horizon is None and page:
                    # No state yet: the newest run anchors the horizon on Letta's own clock.
                    anchor = created_ts(page[0])
                    if anchor is not None:
                        horizon = min(anchor - tracker.overlap, count_from)
                if self._take(page, horizon, listed):
                    break
        except BaseException:
            # What was read still counts; the watermark stays, so the rest is read again next poll.
            self._admit_oldest_first(listed, first=first, count_from=count_from, advance=False)
            raise
        self._admit_oldest_first(listed, first=first, count_from=count_from, advance=True)
        self.baselined = True

    def _take(self, page: list[Run], horizon: float | None, listed: list[tuple[float, Run]]) -> bool:
        """Add the page's runs above the horizon to ``listed``; whether the horizon was reached."""
        reached_horizon = False
        self.seen += len(page)
        for run in page:
            if run.agent_id:
                self.agents.add(run.agent_id)
            created = created_ts(run)
            if created is None:
                # Without created_at a run cannot be placed against the horizon: count, skip.
                self.metrics.observe_malformed("list_runs")
            elif horizon is not None and created < horizon:
                reached_horizon = True
            else:
                listed.append((created, run))
        return reached_horizon

    def _admit_oldest_first(
        self, listed: list[tuple[float, Run]], *, first: bool, count_from: float, advance: bool
    ) -> None:
        tracker = self.tracker
        handled: float | None = None
        tracker.deferred_since = None
        self._waiting = set()
        for index, (created, run) in enumerate(reversed(listed)):
            seen = tracker.observe(run, count_terminal=not first or created >= count_from)
            if seen is Seen.DEFERRED:
                # Backpressure: this run and every newer one wait in Letta for a later poll.
                finished = run.completed_at.timestamp() if run.completed_at is not None else created
                tracker.deferred_since = finished
                newer = listed[: len(listed) - index]  # this run and the ones listed before it
                self._waiting = {r.id for _, r in newer if r.is_terminal and not tracker.is_known(r.id)}
                break
            if seen is Seen.PENDING:
                self.admit(run.id)
            handled = created
        if advance and handled is not None:
            tracker.advance_watermark(handled)

    async def track(self) -> list[Run]:
        """Read the active set; return it (for the live gauges) after taking in runs that left it."""
        tracker = self.tracker
        active: dict[str, Run] = {}
        pages = 0
        async for page in self.client.iter_runs(page_size=self.options.page_size, active=True):
            for run in page:
                if not run.is_terminal:
                    active[run.id] = run
            pages += 1
            if pages >= self.options.max_active_pages:
                log.warning("active runs exceed %d pages; tracking the newest only", pages)
                break
        for run in active.values():
            tracker.observe(run)
        if self.skipped:  # runs that ended meanwhile are listed, finished, by the next discovery
            return list(active.values())

        # A run that left the active set while still within discovery's reach is usually read,
        # finished, by the next discovery: it is asked for only if it is still missing a tick
        # later (deleted, say), which saves a request for nearly every run seen in flight.
        horizon = tracker.horizon
        missing = [
            run_id for run_id in tracker.in_flight if run_id not in active and run_id not in self._waiting
        ]
        gone = [
            run_id
            for run_id in missing
            if run_id in self._missing_last_tick or horizon is None or tracker.in_flight[run_id] < horizon
        ]
        self._missing_last_tick = set(missing) - set(gone)
        await asyncio.gather(*(self._resolve_gone(run_id) for run_id in gone))
        return list(active.values())

    async def _resolve_gone(self, run_id: str) -> None:
        async with self._semaphore:
            try:
                run = await self.client.retrieve_run(run_id)
            except LettaNotFound:
                self.tracker.forget(run_id)
                self.metrics.runs_lost.labels("deleted").inc()
                log.info("run %s vanished before it finished; not counted", run_id)
                return
            except LettaError as exc:
                log.debug("retrieve %s failed, retrying next tick: %s", run_id, exc)
                return
        seen = self.tracker.observe(run)
        if seen is Seen.PENDING:
            self.admit(run_id)
        elif seen is Seen.IN_FLIGHT:
            # Not active, yet not finished: a status this exporter does not know. Keep asking,
            # but not forever: each such run costs a request per poll.
            created = created_ts(run)
            if created is not None and time.time() - created > self.options.max_in_flight_age:
                self.tracker.forget(run_id)
                self.metrics.runs_lost.labels("stale").inc()
                log.warning("run %s still %r after %.0fs; no longer tracked", run_id, run.status,
                            time.time() - created)  # fmt: skip
