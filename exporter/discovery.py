"""Discovery: which runs exist and which have finished, read from Letta's run lists each poll.

``discover`` pages the run list newest first down to a depth below the newest run handled, so runs
made visible late are still found, and admits finished runs to the tracker oldest first, the rest
staying in Letta while its pending set is full; ``track`` reads the runs in flight (active.py). How
deep each read goes (a short read each poll, a deep pass a few pages a poll), and why not always the
whole overlap window: docs/architecture.md ("Run lifecycle", steps 1 and 2).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from exporter import defaults
from exporter.active import ActiveRuns
from exporter.families import Lost
from exporter.figures import awaits_listing, listed_agent
from exporter.letta.availability import EndpointAvailability
from exporter.letta.client import Endpoint, LettaClient
from exporter.letta.errors import LettaError, LettaNotFound
from exporter.letta.models import Run
from exporter.prometheus import ExporterMetrics
from exporter.tracker import RunTracker, Seen, created_ts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveryOptions:
    page_size: int = defaults.PAGE_SIZE
    concurrency: int = defaults.CONCURRENCY
    backfill: float = defaults.BACKFILL
    max_active_pages: int = 50
    max_in_flight_age: float = 86400.0
    # Seconds below the watermark read between deep reads; 0 reads down to the horizon every poll.
    short_reach: float = 0.0
    deep_every: float = 0.0  # seconds between deep passes down to the tracker's horizon
    poll_interval: float = defaults.POLL_INTERVAL


def reaches(overlap: float, poll_interval: float) -> tuple[float, float, float]:
    """(short reach, seconds between deep passes, the deep pass's reach) for an overlap window and a
    poll interval. A run made visible up to ``overlap`` late is found by the first deep pass to reach
    its place after it appears: passes start ``deep_every`` apart and take about half that (their
    pages are spread over the polls), so a pass reaches ``1.5 * deep_every`` beyond the overlap
    window. A short read finds the usual stragglers (seconds late) at once. Where a short read would
    reach the overlap window anyway, every read is deep."""
    short = max(2.0, 2 * poll_interval)
    if short >= overlap:
        return 0.0, 0.0, overlap
    deep_every = max(overlap / 2, poll_interval)
    return short, deep_every, overlap + 1.5 * deep_every


class Discovery:
    def __init__(
        self,
        client: LettaClient,
        tracker: RunTracker,
        metrics: ExporterMetrics,
        options: DiscoveryOptions,
        *,
        admit: Callable[[str], None],
        availability: EndpointAvailability,
    ) -> None:
        self.client = client
        self.tracker = tracker
        self.metrics = metrics
        self.options = options
        self.admit = admit  # called with each run admitted for enrichment
        self.active = ActiveRuns(client, availability, page_size=options.page_size,
                                 max_pages=options.max_active_pages)  # fmt: skip
        self.started_at = time.time()
        self.baselined = False
        self._semaphore = asyncio.Semaphore(options.concurrency)
        self._missing_last_tick: set[str] = set()
        self._left_active: dict[str, float] = {}  # run ID -> created_at, as of the last track
        # The deep pass under way (its pages, read a few a poll), when it began, how many pages a poll
        # it reads, and when the last one began (time.monotonic()).
        self._deep: AsyncIterator[list[Run]] | None = None
        self._deep_pages = 0
        self._pages_per_poll = 4
        self._last_deep: float | None = None
        # Finished runs listed without a created_at, counted lost once each (bounded memory).
        self._unplaceable: OrderedDict[str, None] = OrderedDict()
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
        first = not self.baselined
        # "Start at now" means at process start, not at the first poll that succeeds: runs created
        # after start-up count even when Letta was unreachable at first.
        count_from = self.started_at - self.options.backfill
        listed: dict[str, tuple[float, Run]] = {}
        self.seen, self.agents = 0, set()
        try:
            if first or not self.options.short_reach or self.tracker.watermark is None:
                await self._read_whole(listed, first=first, count_from=count_from)
            else:
                await self._read_short(listed)
                await self._read_deep(listed)
        except BaseException:
            # What was read still counts; the watermark stays, so the rest is read again next poll.
            self._admit_oldest_first(listed, first=first, count_from=count_from, advance=False)
            raise
        self._admit_oldest_first(listed, first=first, count_from=count_from, advance=True)
        self.baselined = True

    def _runs(self) -> AsyncIterator[list[Run]]:
        # Runs already recorded are recognised by ID and not validated; pending ones are, since a
        # listing of one can bring what it lacked (its duration, written a moment after it ended).
        walk = self.client.iter_runs(
            page_size=self.options.page_size, known=self.tracker.finalised.__contains__
        )
        return aiter(walk)

    async def _read_whole(
        self, listed: dict[str, tuple[float, Run]], *, first: bool, count_from: float
    ) -> None:
        """Down to the horizon in one walk: the first discovery (no state yet: the newest run anchors
        the horizon on Letta's own clock), and every one where a short read would reach it anyway."""
        tracker = self.tracker
        horizon = tracker.horizon
        async for page in self._runs():
            if first and horizon is None and page and (anchor := created_ts(page[0])) is not None:
                horizon = min(anchor - tracker.overlap, count_from)
            if self._take(page, listed, stop=self._relist_to(horizon), admit_from=horizon):
                break

    async def _read_short(self, listed: dict[str, tuple[float, Run]]) -> None:
        """A few seconds below the watermark, or as deep as a run that just left the active list."""
        tracker = self.tracker
        assert tracker.watermark is not None  # else the whole depth is read
        wanted = [tracker.watermark - self.options.short_reach, *self._left_active.values()]
        horizon = tracker.horizon
        depth = max(horizon, min(wanted)) if horizon is not None else None
        async for page in self._runs():
            if self._take(page, listed, stop=self._relist_to(depth), admit_from=horizon):
                break

    async def _read_deep(self, listed: dict[str, tuple[float, Run]]) -> None:
        """A few more pages of the deep pass under way, or of a new one when one is due."""
        now = time.monotonic()
        if self._deep is None:
            if self._last_deep is not None and now - self._last_deep < self.options.deep_every:
                return
            self._deep, self._deep_pages, self._last_deep = self._runs(), 0, now
        horizon = self.tracker.horizon
        try:
            for _ in range(self._pages_per_poll):
                page = await anext(self._deep)
                self._deep_pages += 1
                if self._take(page, listed, stop=horizon, admit_from=horizon):
                    raise StopAsyncIteration
        except StopAsyncIteration:
            # Spread the next pass over half the time between passes, by this one's length.
            polls = max(1.0, self.options.deep_every / 2 / max(self.options.poll_interval, 0.001))
            self._pages_per_poll = max(2, math.ceil(self._deep_pages / polls))
            self._deep = None
        except BaseException:
            self._deep = None  # a failed page ends the pass; the next one starts from the top
            raise

    def _relist_to(self, depth: float | None) -> float | None:
        """How deep a read goes: ``depth``, or deeper where a pending run still waits for a figure
        its listing brings (on a server without /metrics that listing is the only place its duration
        is written), however old; below the horizon such a read takes nothing else in."""
        awaiting = [
            created
            for entry in self.tracker.pending.values()
            if awaits_listing(entry.run) and (created := created_ts(entry.run)) is not None
        ]
        if depth is None or not awaiting:
            return depth
        return min(depth, min(awaiting))

    def _take(
        self,
        page: list[Run],
        listed: dict[str, tuple[float, Run]],
        *,
        stop: float | None,
        admit_from: float | None,
    ) -> bool:
        """Add the page's runs created since ``admit_from`` to ``listed`` (pending runs below it are
        only listed again), down to ``stop``; whether the walk is done."""
        reached = False
        self.seen += len(page)
        for run in page:
            if agent := listed_agent(run):
                self.agents.add(agent)
            created = created_ts(run)
            if created is None:
                # Without created_at a run cannot be placed against the horizon: count, skip.
                self.metrics.observe_malformed(Endpoint.LIST_RUNS)
                if run.is_terminal:
                    self._unplaceable_run(run.id)
            elif stop is not None and created < stop:
                reached = True
            elif admit_from is None or created >= admit_from:
                listed[run.id] = (created, run)
            elif run.is_terminal:
                self.tracker.relisted(run)
        return reached

    def _unplaceable_run(self, run_id: str) -> None:
        if run_id in self._unplaceable or self.tracker.is_known(run_id):
            return
        self._unplaceable[run_id] = None
        if len(self._unplaceable) > 10_000:
            self._unplaceable.popitem(last=False)
        self.metrics.lose(Lost.MALFORMED, f"run {run_id} is listed finished without a created_at")

    def _admit_oldest_first(
        self, read: dict[str, tuple[float, Run]], *, first: bool, count_from: float, advance: bool
    ) -> None:
        tracker = self.tracker
        listed = sorted(read.values(), key=lambda item: (item[0], item[1].id), reverse=True)
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
                self._admitted(run.id)
            elif seen is Seen.KNOWN and run.is_terminal:
                tracker.relisted(run)
            handled = created
        if advance and handled is not None:
            tracker.advance_watermark(handled)

    def _admitted(self, run_id: str) -> None:
        self.metrics.runs_finished_seen.inc()
        self.admit(run_id)

    async def track(self) -> list[Run]:
        """Read the active set; return it (for the live gauges) after taking in runs that left it."""
        tracker = self.tracker
        active = {run.id: run for run in await self.active.read(tracker.horizon)}
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
        self._left_active = {run_id: tracker.in_flight[run_id] for run_id in missing}
        await asyncio.gather(*(self._resolve_gone(run_id) for run_id in gone))
        return list(active.values())

    async def _resolve_gone(self, run_id: str) -> None:
        async with self._semaphore:
            try:
                run = await self.client.retrieve_run(run_id)
            except LettaNotFound:
                self.tracker.forget(run_id)
                self.metrics.lose(Lost.DELETED, f"run {run_id} vanished from Letta before it finished")
                return
            except LettaError as exc:
                log.debug("retrieve %s failed, retrying next tick: %s", run_id, exc)
                return
        seen = self.tracker.observe(run)
        if seen is Seen.PENDING:
            self._admitted(run_id)
        elif seen is Seen.IN_FLIGHT:
            # Not active, yet not finished: a status this exporter does not know. Keep asking,
            # but not forever: each such run costs a request per poll.
            created = created_ts(run)
            if created is not None and time.time() - created > self.options.max_in_flight_age:
                self.tracker.forget(run_id)
                self.metrics.lose(Lost.STALE, f"run {run_id} still {run.status!r} after "
                                  f"{time.time() - created:.0f}s; no longer tracked")  # fmt: skip
