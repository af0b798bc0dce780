"""Which runs the exporter knows about, and in which stage of their life. Pure state, no I/O.

Each run moves one way: unseen → in flight → pending (finished, enrichment being read) → finalised
(recorded); ``finalised`` is the dedupe set that makes counting exactly-once, and ``pending`` is
bounded: a finished run beyond ``capacity`` is *deferred* and waits in Letta (docs/architecture.md,
"Run lifecycle" and "Exactly once").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from exporter.figures import Reads
from exporter.letta.models import Run


class Seen(Enum):
    KNOWN = "known"  # finalised or pending already: nothing to do
    PENDING = "pending"  # newly finished: admitted for enrichment
    DEFERRED = "deferred"  # newly finished, but pending is full: left in Letta for a later poll
    IN_FLIGHT = "in_flight"  # still created/running
    HISTORY = "history"  # finished before the exporter started: never counted


@dataclass
class PendingRun:
    run: Run
    reads: Reads = field(default_factory=Reads)
    failures: int = 0
    settle_checks: int = 0
    relistings: int = 0  # listings of the run since it was taken in (each may bring a late figure)
    relistings_seen: int = 0  # ``relistings`` at the last settle look
    looked_at: float = field(default_factory=time.monotonic)  # the last settle look that counted
    settling: bool = False  # waiting for figures Letta writes late: a bounded wait, not a stall
    admitted_at: float = field(default_factory=time.time)
    # The steps stream's part (exporter/steps_stream.py): reads that did not yet cover the run, and
    # whether its steps are to be read per run after all (or as well, to check the stream).
    stream_looks: int = 0
    steps_per_run: bool = False
    check_stream: bool = False

    @property
    def finished_at(self) -> float:
        """When Letta says the run finished (Unix time); a run without ``completed_at`` counts as
        finished when it was admitted."""
        return _timestamp(self.run.completed_at) or self.admitted_at


def _timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def created_ts(run: Run) -> float | None:
    return _timestamp(run.created_at)


class RunTracker:
    def __init__(self, *, overlap: float, capacity: int) -> None:
        self.overlap = overlap
        self.capacity = capacity
        self.in_flight: dict[str, float] = {}  # run ID → created_at (Unix time)
        self.pending: dict[str, PendingRun] = {}
        self.finalised: dict[str, float] = {}  # run ID → created_at
        self.watermark: float | None = None  # newest created_at handled, on Letta's clock
        # completed_at of the oldest finished run left in Letta by the last discovery (None: none).
        self.deferred_since: float | None = None

    # -- discovery ---------------------------------------------------------------------------

    @property
    def horizon(self) -> float | None:
        """Runs created before this are out of discovery's reach (handled, or history)."""
        return self.watermark - self.overlap if self.watermark is not None else None

    def advance_watermark(self, created: float) -> None:
        if self.watermark is None or created > self.watermark:
            self.watermark = created

    def is_known(self, run_id: str) -> bool:
        """Finalised or pending: a listing of it again changes nothing."""
        return run_id in self.finalised or run_id in self.pending

    def observe(self, run: Run, *, count_terminal: bool = True) -> Seen:
        """Take in a run from a listing or a retrieve. ``count_terminal=False`` marks a finished run
        as history (start-up without backfill) instead of admitting it to be counted."""
        if self.is_known(run.id):
            return Seen.KNOWN
        created = created_ts(run) or time.time()
        if not run.is_terminal:
            self.in_flight[run.id] = created
            return Seen.IN_FLIGHT
        if not count_terminal:
            self.in_flight.pop(run.id, None)
            self.finalised[run.id] = created
            return Seen.HISTORY
        if len(self.pending) >= self.capacity:
            return Seen.DEFERRED
        self.in_flight.pop(run.id, None)
        self.pending[run.id] = PendingRun(run)
        return Seen.PENDING

    def relisted(self, run: Run) -> None:
        """A pending run listed again: its row may now carry what Letta wrote after listing it
        finished (its duration, its callback's result)."""
        entry = self.pending.get(run.id)
        if entry is not None:
            entry.run = run
            entry.relistings += 1

    def forget(self, run_id: str) -> None:
        """A run given up (deleted in Letta, stale): stop tracking it without counting it, and keep it
        with the finalised ones, so a listing that still shows it does not take it in again."""
        created = self.in_flight.pop(run_id, None)
        entry = self.pending.pop(run_id, None)
        if entry is not None:
            created = created_ts(entry.run)
        self.finalised[run_id] = created or time.time()

    # -- finalisation ------------------------------------------------------------------------

    def finalise(self, run_id: str) -> None:
        entry = self.pending.pop(run_id)
        self.finalised[run_id] = created_ts(entry.run) or time.time()

    def oldest_unrecorded(self) -> float | None:
        """When the longest-waiting finished run finished, admitted or still left in Letta."""
        oldest = min((entry.finished_at for entry in self.pending.values()), default=None)
        if self.deferred_since is not None and (oldest is None or self.deferred_since < oldest):
            return self.deferred_since
        return oldest

    def prune(self) -> int:
        """Drop finalised IDs below the horizon: discovery skips those runs, so they cannot return."""
        horizon = self.horizon
        if horizon is None:
            return 0
        cutoff = horizon - self.overlap
        stale = [run_id for run_id, created in self.finalised.items() if created < cutoff]
        for run_id in stale:
            del self.finalised[run_id]
        return len(stale)

    @property
    def size(self) -> int:
        return len(self.in_flight) + len(self.pending)
