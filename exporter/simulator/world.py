"""The simulated server's state: runs, their lifecycle in wall-clock time, indexes and ground truth.

Time is real (or an injected clock). Nothing runs in the background: every call first materialises
what has happened up to "now" -- arrivals from a seeded Poisson schedule, then lifecycle events in
time order (a run becomes visible, terminal, counted in truth, settled). Given a seed and the same
call timing, the same runs come out.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from exporter.simulator import shapes
from exporter.simulator.config import SimConfig
from exporter.simulator.runs import (
    TOOL_NAMES,
    US_PER_S,
    Agent,
    RunDetails,
    RunFactory,
    SimRun,
    derive_details,
    make_agents,
    make_tools,
)
from exporter.simulator.traces import TruthSpan, trace_of
from exporter.simulator.truth import USAGE_KEYS, TruthRun, TruthStep, TruthTotals

ACTIVE_STATUSES = frozenset({"created", "running"})

# Lifecycle events, processed in time order.
VISIBLE, END, TRUTH, DONE = range(4)

DETAILS_CACHE_SIZE = 4096


def cursor_bounds(
    descending: bool, before: str | None, after: str | None, *, reversed_: bool
) -> tuple[str | None, str | None]:
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
        self._events: list[tuple[int, int, int, SimRun]] = []
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

    def _push(self, at_us: int, kind: int, run: SimRun) -> None:
        heapq.heappush(self._events, (at_us, next(self._seq), kind, run))

    def _add(self, run: SimRun) -> None:
        self._runs[run.id] = run
        self._pending += 1
        self._push(run.visible_us, VISIBLE, run)
        if run.stuck:
            self._stuck[run.id] = run
        else:
            self._schedule_end(run)

    def _schedule_end(self, run: SimRun) -> None:
        assert run.end_us is not None
        self._push(run.end_us, END, run)
        self._push(max(run.visible_us, run.end_us), TRUTH, run)
        self._push(max(run.visible_us, run.end_us + run.settle_lag_us), DONE, run)

    def _process_events(self, now: int) -> None:
        events = self._events
        while events and events[0][0] <= now:
            at_us, _, kind, run = heapq.heappop(events)
            if run.deleted:
                continue
            if kind == VISIBLE:
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
                # Its truth is already in the totals; only the run itself goes.
                del self._runs[run.id]
                self._details.pop(run.id, None)
                self._traces.pop(run.id, None)
                self.pruned += 1
            else:
                kept.append(keys[index])  # stuck or still settling: keep until it is done
            index += 1
        if index:
            keys[:index] = kept

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
                run.end_us = now + int(self._rng.uniform(0.01, 0.05) * US_PER_S)
                run.start_us = min(run.start_us, run.end_us)
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
            self._details.pop(run_id, None)
            self._traces.pop(run_id, None)

    # -- ground truth ----------------------------------------------------------------------------

    def _run_details(self, run: SimRun) -> RunDetails:
        # Re-derivation is cheap but not free; the exporter reads usage, metrics and steps in a row.
        details = self._details.get(run.id)
        if details is None:
            details = derive_details(run, self._tools)
            self._details[run.id] = details
            if len(self._details) > DETAILS_CACHE_SIZE:
                self._details.popitem(last=False)
        return details

    def _trace(self, run: SimRun) -> list[tuple[TruthSpan, dict[str, Any]]]:
        """The run's trace as (span, row) pairs; only trace_mode "rows" has any."""
        if self.config.trace_mode != "rows" or run.end_us is None:
            return []
        trace = self._traces.get(run.id)
        if trace is None:
            trace = trace_of(run, self._run_details(run), self._tools)
            self._traces[run.id] = trace
            if len(self._traces) > DETAILS_CACHE_SIZE:
                self._traces.popitem(last=False)
        return trace

    def _truth_run(self, run: SimRun) -> TruthRun:
        details = self._run_details(run)
        run_ns = run.run_ns
        assert run.end_us is not None and run_ns is not None
        ttft_ns = run.ttft_ns
        if self._hide_ttft and ttft_ns is not None:
            ttft_ns = ttft_ns // 1_000_000 * 1_000_000  # known only from the trace, in whole ms
        trace = self._trace(run)
        return TruthRun(
            id=run.id,
            agent_id=run.agent.id,
            status=run.status,
            stop_reason=run.stop_reason,
            created_at=shapes.to_datetime(run.created_us),
            completed_at=shapes.to_datetime(run.end_us),
            ttft_ns=ttft_ns,
            total_duration_ns=run_ns,
            num_steps=len(details.steps),
            tools_used=list(details.tools_used or ()),
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
                    page.append(shapes.run_body(run, now, listed=True, hide_ttft=self._hide_ttft))
            return page

    def list_active(self, where: RunFilter) -> list[dict[str, Any]]:
        with self._lock:
            now = self._tick()
            return [
                shapes.run_body(run, now, listed=True, hide_ttft=self._hide_ttft)
                for run in self._ordered(True, None, None, active_only=True)
                if where.matches(run, now)
            ]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            now = self._tick()
            run = self._visible(run_id)
            return shapes.run_body(run, now, listed=False, hide_ttft=self._hide_ttft) if run else None

    def usage(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            now = self._tick()
            run = self._visible(run_id)
            if run is None:
                return None
            return shapes.usage_body(self._run_details(run) if run.terminal_at(now) else None)

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

    def steps(
        self,
        run_id: str,
        *,
        descending: bool = True,
        limit: int = 100,
        before: str | None = None,
        after: str | None = None,
    ) -> list[dict[str, Any]] | None:
        with self._lock:
            run, finished = self._lookup(run_id)
            if run is None or not finished:
                return None if run is None else []
            steps = list(self._run_details(run).steps)
            index = {step.id: position for position, step in enumerate(steps)}
            # Letta 0.16.8's steps list reads cursors as the spec does, whatever the run list does.
            newer_than, older_than = cursor_bounds(descending, before, after, reversed_=False)
            start, stop = 0, len(steps)
            if newer_than in index:
                start = index[newer_than] + 1
            if older_than in index:
                stop = index[older_than]
            chosen = steps[start:stop]
            if descending:
                chosen.reverse()
            return [shapes.step_body(run, step) for step in chosen[: max(0, limit)]]

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
