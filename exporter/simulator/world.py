"""The simulated server's state: runs, their lifecycle in wall-clock time, indexes and ground truth.

Time is real (or an injected clock). Nothing runs in the background: every call first materialises
what has happened up to "now" -- arrivals from a seeded Poisson schedule, then lifecycle events in
time order (a run becomes visible, one of its step rows becomes visible, the run becomes terminal,
counted in truth, settled). Given a seed and the same call timing, the same runs come out.

A step row is written pending when its step starts and filled in when it ends, both within its
run's life; the visible rows are indexed by (created_at, id) for the global steps list.

One lock guards everything; every public method takes it once. Queries serialise under the lock
too, because a run's answer depends on the moment it is read.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from exporter.simulator import shapes, shapes_011
from exporter.simulator.runs import (
    TOOL_NAMES,
    US_PER_S,
    Agent,
    RunDetails,
    RunFactory,
    SimRun,
    StepData,
    derive_details,
    make_agents,
    make_tools,
)
from exporter.simulator.simconfig import SimConfig
from exporter.simulator.stepindex import AFTER_IDS, Key, StepIndex
from exporter.simulator.trace_store import TruthSpan, trace_of
from exporter.simulator.truth import USAGE_KEYS, TruthRun, TruthStep, TruthTotals

ACTIVE_STATUSES = frozenset({"created", "running"})
JOBS_LIST_LIMIT = 50  # Letta 0.11's list_jobs default, which its /v1/runs/active leaves in place

# Lifecycle events, processed in time order. STEP: a step row becomes visible.
VISIBLE, END, TRUTH, DONE, STEP = range(5)

DETAILS_CACHE_SIZE = 4096
T = TypeVar("T")


class UnknownCursor(LookupError):
    """A list cursor naming no visible row, where Letta's ORM looks it up: 404 ``No <table> found``."""

    def __init__(self, table: str, ident: str) -> None:
        super().__init__(ident)
        self.body = shapes.no_row(table, ident)


def window(rows: Iterable[T], limit: int, both_cursors: bool) -> list[T]:
    """A page as Letta's ORM cuts it: ``limit`` rows; with both cursors, ``2 * limit`` fetched and the
    middle ``limit`` of them kept (``_list_postprocess``)."""
    limit = max(0, limit)
    fetched = list(itertools.islice(rows, 2 * limit if both_cursors else limit))
    if both_cursors and len(fetched) > limit:
        start = max(0, len(fetched) // 2 - limit // 2)
        fetched = fetched[start : start + limit]
    return fetched


def _bound(first: Key | None, second: Key | None, pick: Callable[[Key, Key], Key]) -> Key | None:
    if first is None or second is None:
        return first if second is None else second
    return pick(first, second)


def cursor_bounds(
    descending: bool, before: T | None, after: T | None, *, reversed_: bool
) -> tuple[T | None, T | None]:
    """(the row the result is newer than, the row it is older than) for a list's cursors.

    As the spec words it, ``after=X`` lists what comes after X *in the sort order* (older rows when
    newest first) and ``before=X`` what comes before. Letta 0.16.8's run list reverses both in
    every order (its pagination helper filters ``after`` with ``forward = not ascending``).
    """
    if descending != reversed_:
        return before, after
    return after, before


@dataclass(frozen=True)
class RunFilter:
    statuses: frozenset[str] | None = None
    agent_id: str | None = None
    background: bool | None = None
    stop_reason: str | None = None
    conversation_id: str | None = None

    def matches(self, run: SimRun, now_us: int) -> bool:
        if self.agent_id is not None and run.agent.id != self.agent_id:
            return False
        if self.background is not None and run.background != self.background:
            return False
        if self.conversation_id is not None and run.conversation_id != self.conversation_id:
            return False
        if self.statuses is not None and run.status_at(now_us) not in self.statuses:
            return False
        # A running run has no stop reason yet.
        return self.stop_reason is None or (run.terminal_at(now_us) and run.stop_reason == self.stop_reason)


class World:
    def __init__(self, config: SimConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        now = self._now_us()
        self.agents: list[Agent] = make_agents(config, now)
        self._agents_by_id = {agent.id: agent for agent in self.agents}
        self._tools = make_tools(config)
        self._factory = RunFactory(config, self._rng, self.agents)
        self._runs: dict[str, SimRun] = {}  # materialised, not deleted, not pruned
        self._keys: list[tuple[int, str]] = []  # visible runs, sorted by (created_us, id)
        self._active: dict[str, SimRun] = {}  # visible and not yet terminal
        self._stuck: dict[str, SimRun] = {}
        self._events: list[tuple[int, int, int, SimRun, Key | None]] = []  # (at, seq, kind, run, step)
        self._steps = StepIndex()
        self._jobs_era = config.jobs_era
        self._every_run_id = config.step_run_id == "always"
        self._seq = itertools.count()
        self._pending = 0  # runs not yet terminal + settled + visible
        self._rate = 0.0
        self._next_arrival_us = math.inf
        self._arrivals = 0  # runs the arrival rate generated (what max_runs bounds)
        self._totals = TruthTotals()
        self._details: OrderedDict[str, RunDetails] = OrderedDict()
        self._traces: OrderedDict[str, list[tuple[TruthSpan, dict[str, Any]]]] = OrderedDict()
        self._hide_ttft = config.ttft_in_trace_only
        self._last_prune_us = now
        self.pruned = 0

    # -- time and materialisation ----------------------------------------------------------------

    def _now_us(self) -> int:
        return int(self._clock() * US_PER_S)

    def _tick(self) -> int:
        now = self._now_us()
        self._advance(now)
        return now

    def _advance(self, now: int) -> None:
        while self._next_arrival_us <= now:
            self._add(self._factory.new_run(int(self._next_arrival_us)))
            self._arrivals += 1
            if self._arrivals_done():
                self._next_arrival_us = math.inf
                break
            self._next_arrival_us += self._rng.expovariate(self._rate) * US_PER_S
        self._process_events(now)
        self._maybe_prune(now)

    def _push(self, at_us: int, kind: int, run: SimRun, step: Key | None = None) -> None:
        heapq.heappush(self._events, (at_us, next(self._seq), kind, run, step))

    def _add(self, run: SimRun) -> None:
        self._runs[run.id] = run
        self._pending += 1
        self._push(run.visible_us, VISIBLE, run)
        self._schedule_steps(run, 0)
        if run.stuck:
            self._stuck[run.id] = run
        else:
            self._schedule_end(run)

    def _schedule_steps(self, run: SimRun, first: int) -> None:
        # A row is listed from its start, or from the commit of its run's row if that comes later.
        # The event carries the row's key: listing it later needs no derivation of the run again.
        for step in self._run_details(run).steps[first:]:
            if step.start_us is not None:
                self._push(max(step.start_us, run.visible_us), STEP, run, (step.start_us, step.id))

    def _schedule_end(self, run: SimRun) -> None:
        assert run.end_us is not None
        self._push(run.end_us, END, run)
        self._push(max(run.visible_us, run.end_us), TRUTH, run)
        self._push(max(run.visible_us, run.end_us + run.settle_lag_us), DONE, run)

    def _process_events(self, now: int) -> None:
        events = self._events
        while events and events[0][0] <= now:
            at_us, _, kind, run, step = heapq.heappop(events)
            if run.deleted:
                continue
            if kind == STEP:
                assert step is not None
                self._steps.add(step, run)
            elif kind == VISIBLE:
                run.visible = True
                bisect.insort(self._keys, run.key)
                if not run.terminal_at(at_us):
                    self._active[run.id] = run
            elif kind == END:
                self._active.pop(run.id, None)
            elif kind == TRUTH:
                run.counted = True
                self._totals.add(self._truth_run(run))
            else:
                run.done = True
                self._pending -= 1

    def _maybe_prune(self, now: int) -> None:
        retention = self.config.retention_seconds
        if retention is None:
            return
        retention_us = int(retention * US_PER_S)
        if now - self._last_prune_us < min(US_PER_S, retention_us // 4):
            return
        self._last_prune_us = now
        cutoff = now - retention_us
        keys = self._keys
        kept: list[tuple[int, str]] = []
        index = 0
        while index < len(keys) and keys[index][0] < cutoff:
            run = self._runs[keys[index][1]]
            if run.done:
                # Its truth is already in the totals; only the run itself goes, from every list
                # (marked like a deleted run, so that the steps index skips its rows).
                run.deleted = True
                del self._runs[run.id]
                self._details.pop(run.id, None)
                self._traces.pop(run.id, None)
                self.pruned += 1
            else:
                kept.append(keys[index])  # stuck or still settling: keep until it is done
            index += 1
        if index:
            keys[:index] = kept
        self._steps.prune(cutoff)

    # -- driving the workload --------------------------------------------------------------------

    def set_rate(self, runs_per_second: float) -> None:
        if runs_per_second < 0:
            raise ValueError("runs_per_second must not be negative")
        with self._lock:
            now = self._tick()
            self._rate = runs_per_second
            # Memoryless arrivals: restarting the schedule at "now" changes nothing statistically.
            gap = self._rng.expovariate(runs_per_second) * US_PER_S if runs_per_second > 0 else math.inf
            self._next_arrival_us = math.inf if self._arrivals_done() else now + gap

    def _arrivals_done(self) -> bool:
        limit = self.config.max_runs
        return limit is not None and self._arrivals >= limit

    def burst(self, count: int) -> list[str]:
        with self._lock:
            now = self._tick()
            runs = [self._factory.new_run(now) for _ in range(count)]
            for run in runs:
                self._add(run)
            self._process_events(now)
            return [run.id for run in runs]

    def add_history(self, count: int, max_age_seconds: float) -> list[str]:
        """Runs that started and finished in the past, visible and settled already.

        Ages spread uniformly up to ``max_age_seconds``, but never less than the run's own duration."""
        with self._lock:
            now = self._tick()
            runs = []
            for _ in range(count):
                run = self._factory.new_run(0, history=True)
                assert run.end_us is not None
                duration = run.end_us - run.created_us
                floor = duration + 1000
                age = int(self._rng.uniform(floor, max(floor, max_age_seconds * US_PER_S)))
                created = now - age
                shift = created - run.created_us
                run.created_us, run.start_us, run.visible_us = created, run.start_us + shift, created
                run.end_us += shift
                runs.append(run)
                self._add(run)
            self._process_events(now)
            return [run.id for run in runs]

    def add_stuck(self, count: int) -> list[str]:
        with self._lock:
            now = self._tick()
            runs = [self._factory.new_run(now, stuck=True) for _ in range(count)]
            for run in runs:
                self._add(run)
            self._process_events(now)
            return [run.id for run in runs]

    def release_stuck(self) -> None:
        with self._lock:
            now = self._tick()
            for run in self._stuck.values():
                run.stuck = False
                # After its start, which its first step (listed already) began at.
                run.end_us = max(now, run.start_us) + int(self._rng.uniform(0.01, 0.05) * US_PER_S)
                self._details.pop(run.id, None)  # the steps after the first have times now
                self._schedule_steps(run, 1)
                self._schedule_end(run)
            self._stuck.clear()
            self._process_events(now)

    def delete_run(self, run_id: str) -> None:
        with self._lock:
            self._tick()
            run = self._runs.pop(run_id, None)
            if run is None:
                return
            run.deleted = True
            if run.visible:
                index = bisect.bisect_left(self._keys, run.key)
                if index < len(self._keys) and self._keys[index] == run.key:
                    del self._keys[index]
            self._active.pop(run_id, None)
            self._stuck.pop(run_id, None)
            if run.counted:
                self._totals.add(self._truth_run(run), sign=-1)
            if not run.done:
                self._pending -= 1
            for step in self._run_details(run).steps:
                if step.start_us is not None:
                    self._steps.remove((step.start_us, step.id))
            self._details.pop(run_id, None)
            self._traces.pop(run_id, None)

    # -- ground truth ----------------------------------------------------------------------------

    def _run_details(self, run: SimRun) -> RunDetails:
        # Re-derivation is cheap but not free; the exporter reads usage, metrics and steps in a row.
        details = self._details.get(run.id)
        if details is None:
            details = derive_details(run, self._tools, jobs_era=self._jobs_era)
            self._details[run.id] = details
            if len(self._details) > DETAILS_CACHE_SIZE:
                self._details.popitem(last=False)
        return details

    def _trace(self, run: SimRun) -> list[tuple[TruthSpan, dict[str, Any]]]:
        """The run's trace as (span, row) pairs; only trace_mode "rows" has any."""
        if self.config.trace_mode != "rows" or not self.config.run_extras or run.end_us is None:
            return []
        trace = self._traces.get(run.id)
        if trace is None:
            trace = trace_of(run, self._run_details(run), self._tools)
            self._traces[run.id] = trace
            if len(self._traces) > DETAILS_CACHE_SIZE:
                self._traces.popitem(last=False)
        return trace

    def _truth_run(self, run: SimRun) -> TruthRun:
        """The run as the generation serves it once terminal and settled."""
        details = self._run_details(run)
        assert run.end_us is not None
        ttft_ns = run.ttft_ns
        if self._hide_ttft and ttft_ns is not None:
            ttft_ns = ttft_ns // 1_000_000 * 1_000_000  # known only from the trace, in whole ms
        trace = self._trace(run)
        return TruthRun(
            id=run.id,
            agent_id=run.agent.id,
            status=run.status,
            # Letta 0.11's runs have no stop reason of their own (their steps do).
            stop_reason=None if self._jobs_era else run.stop_reason,
            created_at=shapes.to_datetime(run.created_us),
            completed_at=shapes.to_datetime(run.end_us),
            ttft_ns=ttft_ns,
            total_duration_ns=shapes_011.recorded_duration_ns(run) if self._jobs_era else run.run_ns,
            num_steps=len(details.steps),
            # Only /v1/runs/{id}/metrics tells which tools a run used.
            tools_used=list(details.tools_used or ()) if self.config.run_extras else [],
            steps=[
                TruthStep(
                    id=step.id,
                    model=step.model.name,
                    provider_name=step.model.provider,
                    status=step.status,
                    stop_reason=step.stop_reason,
                    prompt_tokens=step.prompt_tokens,
                    completion_tokens=step.completion_tokens,
                    cached_tokens=step.cached_tokens or 0,
                    cache_read_tokens=step.cache_read_tokens or 0,
                    cache_creation_tokens=step.cache_creation_tokens or 0,
                    reasoning_tokens=step.reasoning_tokens or 0,
                    trace_id=step.trace_id,
                    created_at=shapes.to_datetime(step.start_us or 0),
                )
                for step in details.steps
            ],
            callback_url=run.callback_url,
            callback_status_code=run.callback_status_code,
            callback_error=run.callback_error,
            trace_rows=tuple(row for _, row in trace),
            trace_spans=tuple(span for span, _ in trace),
        )

    def truth(self) -> list[TruthRun]:
        with self._lock:
            self._tick()
            runs = (self._runs[run_id] for _, run_id in self._keys)
            return [self._truth_run(run) for run in runs if run.counted]

    def truth_totals(self) -> dict[tuple[str, str | None], int]:
        with self._lock:
            self._tick()
            return dict(self._totals.by_outcome)

    def truth_usage_totals(self) -> dict[str, int]:
        with self._lock:
            self._tick()
            return {key: self._totals.usage[key] for key in USAGE_KEYS}

    def truth_summary(self) -> dict[str, Any]:
        """The truth totals as JSON, for a test that can only reach the simulator over HTTP (one in
        a pod): ``idle`` once every run so far is terminal, settled and visible, and ``done`` once,
        besides, the arrival rate will add no more (max_runs reached, or rate 0)."""
        with self._lock:
            self._tick()
            idle = self._pending == 0
            outcomes = sorted(self._totals.by_outcome.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
            return {
                "idle": idle,
                "done": idle and self._next_arrival_us == math.inf,
                "by_outcome": [
                    {"status": status, "stop_reason": stop_reason, "runs": runs}
                    for (status, stop_reason), runs in outcomes
                ],
                "by_outcome_and_steps": [
                    {"status": status, "stop_reason": stop_reason, "steps_stop_reason": steps, "runs": runs}
                    for (status, stop_reason, steps), runs in self._totals.by_outcome_and_steps.items()
                ],
                "usage": {key: self._totals.usage[key] for key in USAGE_KEYS},
            }

    def tick(self) -> None:
        """Materialise everything up to now; the simulator's pump calls this so no request pays for a
        long quiet spell at a high rate all at once."""
        with self._lock:
            self._tick()

    def idle(self) -> bool:
        with self._lock:
            self._tick()
            return self._pending == 0

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.idle():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def size(self) -> int:
        """Runs held in memory (what retention bounds)."""
        with self._lock:
            self._tick()
            return len(self._runs)

    # -- API queries: JSON-ready bodies, or None for "not found" ----------------------------------

    def _visible(self, run_id: str | None) -> SimRun | None:
        if not run_id:
            return None
        run = self._runs.get(run_id)
        # An uncommitted row is invisible to lookups too, cursor lookups included.
        return run if run is not None and run.visible else None

    def _ordered(
        self,
        descending: bool,
        lower: tuple[int, str] | None,
        upper: tuple[int, str] | None,
        active_only: bool,
    ) -> Iterator[SimRun]:
        if active_only:
            # Only the runs in flight: few, so sorting them per request is fine.
            keys = sorted((run.key for run in self._active.values()), reverse=descending)
            for key in keys:
                if (lower is None or key > lower) and (upper is None or key < upper):
                    yield self._runs[key[1]]
            return
        all_keys = self._keys
        start = bisect.bisect_right(all_keys, lower) if lower is not None else 0
        stop = bisect.bisect_left(all_keys, upper) if upper is not None else len(all_keys)
        indexes = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        for index in indexes:
            yield self._runs[all_keys[index][1]]

    def _run_key(self, ident: str | None) -> Key | None:
        """A Letta 0.11 cursor: the run's key, or a 404 for an ID no visible run has."""
        if ident is None:
            return None
        run = self._visible(ident)
        if run is None:
            raise UnknownCursor("Job", ident)
        return run.key

    def _run_body(self, run: SimRun, now: int, *, listed: bool) -> dict[str, Any]:
        if self._jobs_era:
            details = self._run_details(run) if shapes_011.needs_details(run, now) else None
            return shapes_011.run_body(run, now, details)
        return shapes.run_body(run, now, listed=listed, hide_ttft=self._hide_ttft)

    def list_runs(
        self,
        *,
        descending: bool = True,
        limit: int = 100,
        before: str | None = None,
        after: str | None = None,
        where: RunFilter | None = None,
    ) -> list[dict[str, Any]]:
        where = where or RunFilter()
        with self._lock:
            now = self._tick()
            newer_than, older_than = cursor_bounds(
                descending, before, after, reversed_=self.config.generation == "letta-0.16.8"
            )
            # An unknown cursor ID filters nothing (Letta looks the row up and skips the filter).
            lower_run, upper_run = self._visible(newer_than), self._visible(older_than)
            lower = lower_run.key if lower_run else None
            upper = upper_run.key if upper_run else None
            active_only = where.statuses is not None and where.statuses <= ACTIVE_STATUSES
            page = []
            for run in self._ordered(descending, lower, upper, active_only):
                if len(page) >= limit:
                    break
                if where.matches(run, now):
                    page.append(self._run_body(run, now, listed=True))
            return page

    def list_jobs(
        self, *, limit: int = 50, before: str | None = None, after: str | None = None
    ) -> list[dict[str, Any]]:
        """Letta 0.11's run list: newest first whatever is asked, cursors absolute (``after=X``: newer
        than X), an unknown cursor a 404 (UnknownCursor)."""
        with self._lock:
            now = self._tick()
            lower, upper = self._run_key(after), self._run_key(before)
            runs = self._ordered(True, lower, upper, active_only=False)
            both = before is not None and after is not None
            return [self._run_body(run, now, listed=True) for run in window(runs, limit, both)]

    def list_active(self, where: RunFilter) -> list[dict[str, Any]]:
        with self._lock:
            now = self._tick()
            return [
                self._run_body(run, now, listed=True)
                for run in self._ordered(True, None, None, active_only=True)
                if where.matches(run, now)
            ]

    def list_active_jobs(self) -> list[dict[str, Any]]:
        """Letta 0.11's /v1/runs/active: created and running runs (a pending one is neither), oldest
        first, cut at list_jobs' default limit."""
        with self._lock:
            now = self._tick()
            runs = self._ordered(False, None, None, active_only=True)
            active = (run for run in runs if run.status_at(now) in ACTIVE_STATUSES)
            return [
                self._run_body(run, now, listed=True) for run in itertools.islice(active, JOBS_LIST_LIMIT)
            ]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            now = self._tick()
            run = self._visible(run_id)
            return self._run_body(run, now, listed=False) if run else None

    def _rows(self, run: SimRun, now: int) -> list[StepData]:
        """The run's step rows that exist at ``now``, oldest first, each as it reads then."""
        steps = self._run_details(run).steps
        return [step.at(now) for step in steps if step.start_us is not None and step.start_us <= now]

    def _step_body(self, run: SimRun, row: StepData) -> dict[str, Any]:
        if self._jobs_era:
            return shapes_011.step_body(run, row)
        return shapes.step_body(run, row, run.id if self._every_run_id or run.background else None)

    def usage(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            now = self._tick()
            run = self._visible(run_id)
            return shapes.usage_body(self._rows(run, now)) if run else None

    def metrics(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            now = self._tick()
            run = self._visible(run_id)
            return shapes.metrics_body(run, self._run_details(run), now) if run else None

    def _lookup(self, run_id: str) -> tuple[SimRun | None, bool]:
        """(the run, or None when unknown; whether it has finished), under the lock."""
        now = self._tick()
        run = self._visible(run_id)
        return run, run is not None and run.terminal_at(now)

    def _step_key(self, ident: str | None) -> Key | None:
        """A steps-list cursor: the row's key, or a 404 for an ID no listed row has."""
        if ident is None:
            return None
        run = self._steps.owner(ident)
        if run is None or run.deleted:
            raise UnknownCursor("Step", ident)
        start = self._step(run, ident).start_us
        assert start is not None
        return (start, ident)

    def _step(self, run: SimRun, step_id: str) -> StepData:
        return next(step for step in self._run_details(run).steps if step.id == step_id)

    def steps(
        self,
        run_id: str,
        *,
        descending: bool = True,
        limit: int = 100,
        before: str | None = None,
        after: str | None = None,
    ) -> list[dict[str, Any]] | None:
        """``/v1/runs/{id}/steps``: the rows so far (pending ones included); None for an unknown run.
        Cursors as the spec reads them (an unknown one ignored), or on Letta 0.11 absolute (any
        step's ID; an unknown one a 404)."""
        with self._lock:
            now = self._tick()
            run = self._visible(run_id)
            if run is None:
                return None
            rows = self._rows(run, now)
            if self._jobs_era:
                lower, upper = self._step_key(after), self._step_key(before)
                rows = [row for row in rows if _between((row.start_us or 0, row.id), lower, upper)]
                rows = rows[::-1] if descending else rows
                chosen = window(rows, limit, both_cursors=before is not None and after is not None)
            else:
                chosen = _spec_page(rows, descending, limit, before, after)
            return [self._step_body(run, row) for row in chosen]

    def list_steps(
        self,
        *,
        descending: bool = True,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        agent_id: str | None = None,
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /v1/steps/``: rows created strictly between ``start_us`` and ``end_us`` (Letta's ORM
        filters), by (created_at, id), cursors as the spec reads them; Letta 0.11 lists newest first
        whatever is asked, cursors absolute. An unknown cursor is a 404 (UnknownCursor)."""
        with self._lock:
            now = self._tick()
            before_key, after_key = self._step_key(before), self._step_key(after)
            if self._jobs_era:
                descending, newer_than, older_than = True, after_key, before_key
            else:
                newer_than, older_than = cursor_bounds(descending, before_key, after_key, reversed_=False)
            lower = _bound(newer_than, None if start_us is None else (start_us, AFTER_IDS), max)
            upper = _bound(older_than, None if end_us is None else (end_us, ""), min)
            rows = (
                (run, step)
                for run, step_id in self._steps.walk(descending, lower, upper)
                if agent_id is None or run.agent.id == agent_id
                for step in (self._step(run, step_id),)
                if model is None or step.model.name == model
            )
            both = self._jobs_era and before is not None and after is not None
            return [self._step_body(run, step.at(now)) for run, step in window(rows, limit, both)]

    def trace(self, run_id: str, limit: int) -> list[dict[str, Any]] | None:
        """``/trace`` with trace storage: the run's rows (``[]`` in flight, without a trace ID, or in
        trace_mode "empty"); ``None`` for an unknown run."""
        with self._lock:
            run, finished = self._lookup(run_id)
            if run is None or not finished:
                return None if run is None else []
            return [dict(row) for _, row in self._trace(run)[: max(0, limit)]]

    def agent(self, agent_id: str) -> dict[str, Any] | None:
        agent = self._agents_by_id.get(agent_id)
        return shapes.agent_body(agent) if agent else None

    def tool(self, tool_id: str) -> dict[str, Any] | None:
        names = dict(zip(self._tools, TOOL_NAMES, strict=True))
        return shapes.tool_body(tool_id, names[tool_id]) if tool_id in names else None


def _between(key: Key, lower: Key | None, upper: Key | None) -> bool:
    return (lower is None or key > lower) and (upper is None or key < upper)


def _spec_page(
    rows: list[StepData], descending: bool, limit: int, before: str | None, after: str | None
) -> list[StepData]:
    """A page of one run's rows with the spec's cursors (Letta 0.16.8's steps list reads them so);
    a cursor that is not one of the rows is ignored."""
    index = {row.id: position for position, row in enumerate(rows)}
    newer_than, older_than = cursor_bounds(descending, before, after, reversed_=False)
    start, stop = 0, len(rows)
    if newer_than in index:
        start = index[newer_than] + 1
    if older_than in index:
        stop = index[older_than]
    chosen = rows[start:stop]
    if descending:
        chosen.reverse()
    return chosen[: max(0, limit)]
