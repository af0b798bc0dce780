"""Which runs the exporter knows about, and in which stage of their life. Pure state, no I/O.

Each run moves one way: unseen → in flight → pending (terminal, enrichment being read) → finalised
(recorded). ``finalised`` is the dedupe set that makes counting exactly-once: a run ID enters it in
the same synchronous step that records the run, and discovery never reads below the horizon that
the set still covers, so pruning it cannot let an old run be counted again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

from exporter.letta.models import Run
from exporter.outcome import Enrichment


class Seen(Enum):
    KNOWN = "known"  # finalised or pending already: nothing to do
    PENDING = "pending"  # newly terminal: queued for enrichment
    IN_FLIGHT = "in_flight"  # still created/running
    HISTORY = "history"  # terminal before the exporter started: never counted


@dataclass
class PendingRun:
    run: Run
    enrichment: Enrichment = field(default_factory=Enrichment)
    failures: int = 0
    settle_checks: int = 0
    queued_at: float = field(default_factory=time.monotonic)


def created_ts(run: Run) -> float | None:
    return run.created_at.timestamp() if run.created_at is not None else None


class RunTracker:
    def __init__(self, *, overlap: float, max_pending: int) -> None:
        self.overlap = overlap
        self.max_pending = max_pending
        self.in_flight: dict[str, Run] = {}
        self.pending: dict[str, PendingRun] = {}
        self.finalised: dict[str, float] = {}
        self.watermark: float | None = None  # newest created_at seen, on Letta's clock

    # -- discovery ---------------------------------------------------------------------------

    @property
    def horizon(self) -> float | None:
        """Runs created before this are out of discovery's reach (handled, or history)."""
        return self.watermark - self.overlap if self.watermark is not None else None

    def advance_watermark(self, created: float) -> None:
        if self.watermark is None or created > self.watermark:
            self.watermark = created

    def observe(self, run: Run, *, count_terminal: bool = True) -> Seen:
        """Take in a run from a listing or a retrieve. ``count_terminal=False`` marks a terminal run
        as history (start-up without backfill) instead of queueing it to be counted."""
        if run.id in self.finalised or run.id in self.pending:
            return Seen.KNOWN
        if not run.is_terminal:
            self.in_flight[run.id] = run
            return Seen.IN_FLIGHT
        self.in_flight.pop(run.id, None)
        if not count_terminal:
            self.finalised[run.id] = created_ts(run) or time.time()
            return Seen.HISTORY
        self.pending[run.id] = PendingRun(run)
        return Seen.PENDING

    def forget(self, run_id: str) -> None:
        """A run Letta no longer knows (deleted): stop tracking it without counting it."""
        self.in_flight.pop(run_id, None)
        self.pending.pop(run_id, None)

    # -- finalisation ------------------------------------------------------------------------

    def finalise(self, run_id: str) -> None:
        entry = self.pending.pop(run_id)
        self.finalised[run_id] = created_ts(entry.run) or time.time()

    def overflow(self) -> list[PendingRun]:
        """Pending runs beyond the backlog bound, oldest first; the caller records them as they are."""
        excess = len(self.pending) - self.max_pending
        if excess <= 0:
            return []
        return sorted(self.pending.values(), key=lambda p: p.queued_at)[:excess]

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
