"""The steps stream: the steps of many finished runs read from Letta's global steps list, a few pages
a poll, instead of one ``/v1/runs/{id}/steps`` call per run. docs/architecture.md, "Steps stream",
has the window each poll reads, why a run it covers has all its steps there, why exactly-once needs
nothing new, and how a server whose list cannot be trusted is detected (its runs read per run).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from exporter import defaults
from exporter.figures import Source
from exporter.letta.availability import EndpointAvailability
from exporter.letta.client import MAX_PAGE, Endpoint, LettaClient
from exporter.letta.errors import LettaError, LettaHTTPError, PagingError
from exporter.letta.models import Step
from exporter.tracker import PendingRun, RunTracker

log = logging.getLogger(__name__)

ENDPOINT = Endpoint.LIST_STEPS
WITHOUT = "each run's steps read per run (one more call a run)"
MAX_SLICES = 4  # window slices read side by side
_EPSILON = timedelta(milliseconds=1)
# Answers that no retry cures: the server cannot serve this list as asked (401/403/429 excepted).
_NOT_SERVED = frozenset({400, 404, 405, 422, 501})


@dataclass(frozen=True)
class StreamOptions:
    source: str = (
        defaults.STEPS_SOURCE
    )  # auto: the stream where it is served and checks out; stream: no checks
    page_size: int = MAX_PAGE
    max_pages: int = 20  # a poll's window reads no more; runs it would not fit are read per run
    margin: float = 0.25  # seconds each side of the window, for the servers' timestamp rounding
    max_looks: int = 3  # windows that may fail to cover a run before it is read per run
    check_first: int = 5  # the first runs the stream covers are read per run as well, to compare
    check_every: int = 500  # and then one in this many


class StepsStream:
    def __init__(
        self,
        client: LettaClient,
        tracker: RunTracker,
        availability: EndpointAvailability,
        options: StreamOptions,
        *,
        resume: Callable[[str], None],
    ) -> None:
        self.client = client
        self.tracker = tracker
        self.availability = availability
        self.resume = resume  # hands a run that waited for its steps back to the workers
        self.options = options
        checking = options.source == "auto"
        self._check_first = options.check_first if checking else 0
        self._check_every = options.check_every if checking else 0
        self.covered = 0  # runs whose steps came from the stream
        self.step_rate: float | None = None  # steps per second of Letta time, from the last reads
        self._cut_off = 0  # windows in a row cut off at max_pages

    # -- the workers' side ---------------------------------------------------------------------------

    def delivers(self, entry: PendingRun) -> bool:
        """Will a window read bring this run's steps (so the worker waits for it)?"""
        if entry.steps_per_run:
            return False
        return not self.availability.is_missing(ENDPOINT) or self.availability.probe_due(ENDPOINT)

    def checked(self, entry: PendingRun, streamed: list[Step], own: list[Step]) -> list[Step]:
        """The cross-check of a run covered by the stream against its own steps list; what the run
        records is its own list either way."""
        ours, theirs = _fingerprint(streamed), _fingerprint(own)
        if ours != theirs:
            only_stream, only_run = len(ours - theirs), len(theirs - ours)
            self.availability.missing(
                ENDPOINT, f"disagreed with /v1/runs/{entry.run.id}/steps: {only_stream} step rows only in "
                f"the stream, {only_run} only in the run's own list",
            )  # fmt: skip
        return own

    # -- the poll's side -----------------------------------------------------------------------------

    async def read(self) -> None:
        """One window read for the pending runs waiting for their steps (none: no request)."""
        waiting = [entry for entry in self.tracker.pending.values() if self._waits(entry)]
        if not waiting:
            return
        if self.availability.is_missing(ENDPOINT) and not self.availability.may_probe(ENDPOINT):
            self._per_run(waiting)
            return
        fits, too_wide = self._window_runs(waiting)
        self._per_run(too_wide)
        if not fits:
            return
        start = min(_created(entry) for entry in fits) - timedelta(seconds=self.options.margin)
        end = max(_completed(entry) for entry in fits) + timedelta(seconds=self.options.margin)
        try:
            steps = await self._read_window(start, end, {entry.run.id for entry in fits})
        except (PagingError, LettaHTTPError) as exc:
            if isinstance(exc, LettaHTTPError) and exc.status not in _NOT_SERVED:
                self._not_covered(fits)
                raise
            self.availability.missing(ENDPOINT, str(exc))
            self._per_run(fits)
            return
        except LettaError:
            self.availability.probe_failed(ENDPOINT)
            self._not_covered(fits)
            raise
        if steps is None:
            # More pages than a poll spends: no run can be known covered, but none is to blame: the
            # step rate learnt from it narrows the next window. A window that cannot narrow enough (a
            # burst of runs made in the same moment) sends its runs to per-run reads after a few.
            self._cut_off += 1
            if self._cut_off >= self.options.max_looks:
                self._cut_off = 0
                self._per_run(fits)
            return
        self._cut_off = 0
        self.availability.answered(ENDPOINT)
        unnamed = sum(1 for step in steps if step.run_id is None)
        if unnamed:
            self.availability.missing(
                ENDPOINT, f"{unnamed} of {len(steps)} steps do not name their run (run_id is null)"
            )
            self._per_run(fits)
            return
        self._cover(fits, steps)

    @staticmethod
    def _waits(entry: PendingRun) -> bool:
        return Source.STEPS not in entry.reads.data and not entry.steps_per_run

    def _window_runs(self, waiting: list[PendingRun]) -> tuple[list[PendingRun], list[PendingRun]]:
        """The runs this poll's window covers: the oldest waiting ones, as many as fit a window of at
        most ``max_pages`` pages at the step rate seen so far (the rest wait for the next poll's); and
        the runs to read per run instead: those that cannot be placed in time, and those whose own life
        is wider than a window (a run that lasted long on a busy server)."""
        placed = sorted(
            (entry for entry in waiting if entry.run.created_at and entry.run.completed_at), key=_created
        )
        per_run = [entry for entry in waiting if not (entry.run.created_at and entry.run.completed_at)]
        if not self.step_rate:
            return placed, per_run
        # The runs' span, the margins aside, that a window of max_pages holds at the rate seen.
        fit = self.options.max_pages * self.options.page_size * 0.8 / self.step_rate
        widest = timedelta(seconds=max(0.0, fit - 2 * self.options.margin))
        fits: list[PendingRun] = []
        end: datetime | None = None
        for entry in placed:
            if _completed(entry) - _created(entry) > widest:
                per_run.append(entry)
                continue
            later = _completed(entry) if end is None else max(end, _completed(entry))
            if not fits or later - _created(fits[0]) <= widest:
                fits.append(entry)
                end = later
        return fits, per_run

    async def _read_window(self, start: datetime, end: datetime, runs: set[str]) -> list[Step] | None:
        """Every step created within the window, or None when it holds more than ``max_pages`` pages.
        A window expected to span several pages is read as slices side by side: the server makes one
        page while the exporter reads the last (slices overlap by a millisecond, since the server's
        bounds are strict; a step read twice is one row)."""
        options = self.options
        expected = (self.step_rate or 0.0) * (end - start).total_seconds() / options.page_size
        count = max(1, min(MAX_SLICES, math.ceil(expected / 2)))
        cuts = [start + (end - start) * i / count for i in range(1, count)]
        starts = [start, *(cut - _EPSILON for cut in cuts)]
        slices = list(zip(starts, [*(cut + _EPSILON for cut in cuts), end], strict=True))
        # The window is sized to hold max_pages; each slice may read as many, since steps do not
        # spread evenly over time (a slice cut off means the rate seen was far off).
        read = await asyncio.gather(*(self._read_slice(a, b, runs, options.max_pages) for a, b in slices))
        rows = {step.id: step for part, _ in read for step in part}
        if not all(complete for _, complete in read):
            self._learn_rate(len(rows) * 2, start, end, at_least=True)  # narrow the next one
            return None
        self._learn_rate(len(rows), start, end)
        return [step for step in rows.values() if step.run_id is None or step.run_id in runs]

    async def _read_slice(
        self, start: datetime, end: datetime, runs: set[str], budget: int
    ) -> tuple[list[Step], bool]:
        """The slice's steps, and whether they are all of them (not cut off at ``budget`` pages)."""
        rows: list[Step] = []
        pages = 0
        walk = self.client.iter_steps(start=start, end=end, page_size=self.options.page_size,
                                      wanted=runs.__contains__)  # fmt: skip
        async for page in walk:
            rows.extend(page)
            pages += 1
            if pages >= budget and len(page) >= self.options.page_size:
                return rows, False
        return rows, True

    def _learn_rate(self, rows: int, start: datetime, end: datetime, *, at_least: bool = False) -> None:
        """Steps per second of the last window, averaged with what was known; a window cut off only
        says the rate is at least so much, which is taken at once (the next window must fit)."""
        rate = rows / max((end - start).total_seconds(), 0.001)
        if self.step_rate is None or at_least:
            self.step_rate = max(rate, self.step_rate or 0.0)
        else:
            self.step_rate = 0.5 * (self.step_rate + rate)

    def _cover(self, runs: list[PendingRun], steps: list[Step]) -> None:
        by_run: dict[str, list[Step]] = {}
        for step in steps:
            by_run.setdefault(step.run_id or "", []).append(step)
        for entry in runs:
            own = by_run.get(entry.run.id, [])
            if not all(step.is_final for step in own):
                self._not_covered([entry])
                continue
            entry.reads.data[Source.STEPS] = own
            self.covered += 1
            every = self._check_every
            if self.covered <= self._check_first or (every and self.covered % every == 0):
                entry.check_stream = True
            self.resume(entry.run.id)

    def _not_covered(self, runs: list[PendingRun]) -> None:
        """Looked at again by the next window; after a few tries, read per run."""
        for entry in runs:
            entry.stream_looks += 1
        self._per_run([entry for entry in runs if entry.stream_looks >= self.options.max_looks])

    def _per_run(self, runs: list[PendingRun]) -> None:
        for entry in runs:
            entry.steps_per_run = True
            self.resume(entry.run.id)


def _created(entry: PendingRun) -> datetime:
    assert entry.run.created_at is not None
    return entry.run.created_at


def _completed(entry: PendingRun) -> datetime:
    assert entry.run.completed_at is not None
    return entry.run.completed_at


def _fingerprint(steps: list[Step]) -> set[tuple[str | None, int, int]]:
    """What must match between two lists of a run's steps: each row's ID and token counts."""
    return {(step.id, step.prompt_tokens or 0, step.completion_tokens or 0) for step in steps}
