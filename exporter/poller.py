"""One poll tick: discover runs, track the ones in flight, enrich and record the finished ones.

Data flows one way: Letta client → tracker → outcome → metrics. Each phase fails on its own: a
Letta outage in discovery is counted and reported, and the next tick starts over from the same
state, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.breaker import CircuitBreaker
from exporter.labels import enum_label
from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaError, LettaNotFound, LettaNotImplemented, explain, failure_reason
from exporter.letta.models import Run, is_safe_id
from exporter.metrics import ExporterMetrics
from exporter.outcome import Enrichment, compute_outcome, has_settled
from exporter.traces.rows import trace_settled, ttft_ns_from_rows
from exporter.traces.storage import TraceStorage
from exporter.tracker import PendingRun, RunTracker, Seen, created_ts

if TYPE_CHECKING:
    from exporter.traces.pipeline import TracePipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOptions:
    page_size: int = 100
    concurrency: int = 4
    enrich_usage: bool = True
    enrich_metrics: bool = True
    enrich_steps: bool = True
    enrich_trace: bool = True
    agent_names: bool = True
    backfill: float = 0.0
    max_enrichment_failures: int = 5
    max_settle_checks: int = 3
    agent_name_refresh: float = 3600.0
    max_active_pages: int = 50
    max_in_flight_age: float = 86400.0


class Poller:
    def __init__(
        self,
        client: LettaClient,
        tracker: RunTracker,
        metrics: ExporterMetrics,
        options: PollOptions,
        *,
        clock: Callable[[], float] = time.time,
        breaker: CircuitBreaker | None = None,
        traces: TracePipeline | None = None,
        trace_storage: TraceStorage | None = None,
    ) -> None:
        self.client = client
        self.tracker = tracker
        self.metrics = metrics
        self.options = options
        self.clock = clock
        self.started_at = clock()
        self.baselined = False
        self.ready = asyncio.Event()
        self._semaphore = asyncio.Semaphore(options.concurrency)
        self._agent_names: dict[str, str] = {}
        self._agent_names_checked: dict[str, float] = {}
        self._tick_lock = asyncio.Lock()
        self.breaker = breaker or CircuitBreaker()
        self._missing_last_tick: set[str] = set()
        self._failure: BaseException | None = None
        # Finalised runs go on to the trace pipeline (None: trace export is off).
        self.traces = traces
        self.trace_storage = trace_storage or TraceStorage()
        # Called at the end of every tick, e.g. to persist state; their failures are theirs to report.
        self.after_tick: list[Callable[[], Awaitable[None]]] = []

    # -- the tick ------------------------------------------------------------------------------

    async def tick(self) -> None:
        if self._tick_lock.locked():
            return  # APScheduler already refuses overlaps; this guards direct callers too
        async with self._tick_lock:
            if not self.breaker.allow():
                self._publish(False)
                return
            started = time.perf_counter()
            self._failure = None
            reached = await self._phase("discover", self.discover)
            reached = await self._phase("track", self.track) and reached
            self._report(reached)
            if self.baselined:
                await self._phase("enrich", self.enrich)
                if self.options.agent_names:
                    await self._phase("agent_names", self.refresh_agent_names)
            self.tracker.prune()
            self._publish(reached)
            for hook in self.after_tick:
                await hook()
            self.metrics.poll_duration.observe(time.perf_counter() - started)

    async def _phase(self, name: str, phase: Callable[[], Awaitable[Any]]) -> bool:
        try:
            await phase()
            return True
        except LettaError as exc:
            self.metrics.poll_errors.labels(name).inc()
            log.debug("poll phase %s failed: %s", name, exc)
            self._failure = self._failure or exc
        except Exception as exc:
            self.metrics.poll_errors.labels(name).inc()
            log.exception("poll phase %s failed unexpectedly", name)  # a bug: the traceback is the report
            self._failure = self._failure or exc
        return False

    def _report(self, reached: bool) -> None:
        """One log line per poll that could not reach Letta, naming the first cause and the setting
        to check; one when it is reachable again."""
        failed_before = self.breaker.failures
        pause = self.breaker.record(reached)
        self.metrics.circuit_open.set(1 if self.breaker.is_open else 0)
        if reached:
            if failed_before:
                log.warning("Letta is reachable again after %d failed polls", failed_before)
            return
        failure = self._failure or LettaError("poll", "unknown error")
        self.metrics.poll_failures.labels(failure_reason(failure)).inc()
        message = explain(failure, base_url=self.client.base_url, key_set=self.client.key_set)
        if pause is None:
            log.warning("poll failed: %s", message)
        else:
            log.error("poll failed %d times in a row: %s; pausing polls for %.0fs",
                      self.breaker.failures, message, pause)  # fmt: skip

    def _publish(self, reached: bool) -> None:
        self.metrics.live.state.exporter_up = reached
        if reached:
            self.metrics.last_success.set(self.clock())
            self.ready.set()
        self.metrics.tracked.set(self.tracker.size)
        self.metrics.pending.set(len(self.tracker.pending))

    # -- 1. discover -----------------------------------------------------------------------------

    async def discover(self) -> None:
        """Read runs newest first down to the horizon (watermark minus the overlap window), so runs
        that became visible late, with an older ``created_at``, are still found."""
        tracker = self.tracker
        first = not self.baselined
        horizon = tracker.horizon
        # "Start at now" means at process start, not at the first poll that succeeds: runs created
        # after start-up count even when Letta was unreachable at first.
        count_from = self.started_at - self.options.backfill
        newest: float | None = None
        async for page in self.client.iter_runs(page_size=self.options.page_size):
            if first and horizon is None and page:
                # No state yet: the newest run anchors the horizon on Letta's own clock.
                anchor = created_ts(page[0])
                if anchor is not None:
                    horizon = min(anchor - tracker.overlap, count_from)
            reached_horizon = False
            for run in page:
                created = created_ts(run)
                if created is None:
                    # Without created_at a run cannot be placed against the horizon: count, skip.
                    self.metrics.observe_malformed("list_runs")
                    continue
                if horizon is not None and created < horizon:
                    reached_horizon = True
                    continue
                newest = created if newest is None else max(newest, created)
                counted = not first or created >= count_from
                tracker.observe(run, count_terminal=counted)
            if reached_horizon:
                break
        if newest is not None:
            tracker.advance_watermark(newest)
        self.baselined = True

    # -- 2. track --------------------------------------------------------------------------------

    async def track(self) -> None:
        """Read the active set: live gauges, plus runs that left it since the last tick."""
        tracker = self.tracker
        active: dict[str, Any] = {}
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
        self._set_live_gauges(active.values())

        # A run that left the active set while still within discovery's reach is usually read,
        # finished, by the next discovery: it is asked for only if it is still missing a tick
        # later (deleted, say), which saves a request for nearly every run seen in flight.
        horizon = tracker.horizon
        missing = [run_id for run_id in tracker.in_flight if run_id not in active]
        gone = [
            run_id
            for run_id in missing
            if run_id in self._missing_last_tick
            or horizon is None
            or (created_ts(tracker.in_flight[run_id]) or 0.0) < horizon
        ]
        self._missing_last_tick = set(missing) - set(gone)
        await asyncio.gather(*(self._resolve_gone(run_id) for run_id in gone))

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
        if self.tracker.observe(run) is Seen.IN_FLIGHT:
            # Not active, yet not terminal: a status this exporter does not know. Keep asking,
            # but not forever: each such run costs a request per poll.
            created = created_ts(run)
            if created is not None and self.clock() - created > self.options.max_in_flight_age:
                self.tracker.forget(run_id)
                self.metrics.runs_lost.labels("stale").inc()
                log.warning("run %s still %r after %.0fs; no longer tracked", run_id, run.status,
                            self.clock() - created)  # fmt: skip

    def _set_live_gauges(self, active: Any) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        oldest: float | None = None
        for run in active:
            agent = self.metrics.agent(run.agent_id)
            counts[(agent[0] if agent else "", enum_label(run.status))] += 1
            created = created_ts(run)
            if created is not None and (oldest is None or created < oldest):
                oldest = created
        state = self.metrics.live.state
        state.active = dict(counts)
        state.oldest_active_created_at = oldest

    # -- 3. enrich and record --------------------------------------------------------------------

    async def enrich(self) -> None:
        tracker = self.tracker
        for entry in tracker.overflow():
            self.metrics.enrichment_given_up.labels("backlog").inc()
            self._record(entry)
        entries = sorted(tracker.pending.values(), key=lambda p: p.queued_at)
        await asyncio.gather(*(self._enrich_one(entry) for entry in entries))

    async def _enrich_one(self, entry: PendingRun) -> None:
        options = self.options
        enrichment = entry.enrichment
        run_id = entry.run.id
        failed: list[str] = []
        async with self._semaphore:
            try:
                if options.enrich_metrics and enrichment.metrics is None:
                    enrichment.metrics = await self._read("metrics", failed, self.client.run_metrics(run_id))
                if options.enrich_steps and enrichment.steps is None:
                    enrichment.steps = await self._read("steps", failed, self.client.run_steps(run_id))
                # Steps carry every token figure /usage has (and more), so /usage is read only
                # when steps are switched off: one API call fewer per run.
                if options.enrich_usage and not options.enrich_steps and enrichment.usage is None:
                    enrichment.usage = await self._read("usage", failed, self.client.run_usage(run_id))
                if enrichment.trace_rows is None and self._wants_trace(entry.run, enrichment):
                    rows = await self._read("trace", failed, self._read_trace(run_id))
                    enrichment.trace_rows = rows
                    enrichment.ttft_ns_from_trace = ttft_ns_from_rows(rows) if rows else None
            except LettaNotFound:
                self.tracker.forget(run_id)
                self.metrics.runs_lost.labels("deleted").inc()
                return
        if failed:
            entry.failures += 1
            if entry.failures <= options.max_enrichment_failures:
                return
            for source in failed:
                self.metrics.enrichment_given_up.labels(source).inc()
            log.warning(
                "recording run %s without %s after %d tries", run_id, ", ".join(failed), entry.failures
            )
        elif entry.settle_checks < options.max_settle_checks:
            # Listed terminal before Letta wrote its duration, or before its spans reached trace
            # storage (written in batches): look again next tick.
            metrics_late = options.enrich_metrics and not has_settled(entry.run, enrichment)
            trace_late = not self._trace_complete(enrichment)
            if metrics_late or trace_late:
                entry.settle_checks += 1
                if metrics_late:
                    enrichment.metrics = None
                if trace_late:
                    enrichment.trace_rows = None
                return
        self._record(entry)

    async def _read(self, source: str, failed: list[str], call: Awaitable[Any]) -> Any:
        try:
            return await call
        except LettaNotFound:
            raise
        except LettaError as exc:
            self.metrics.enrichment_failures.labels(source).inc()
            log.debug("enrichment %s failed: %s", source, exc)
            failed.append(source)
            return None

    def _wants_trace(self, run: Run, enrichment: Enrichment) -> bool:
        """/trace is read for trace export, or for TTFT when the run lacks one and its steps name a
        trace (each read is an API call, so not otherwise), and not while Letta has no trace
        storage, bar the odd probe."""
        if not self.options.enrich_trace:
            return False
        wanted = self.traces is not None and self.traces.wants_rows
        if not wanted and run.ttft_ns is None:
            # Steps name their trace when Letta traced the run (null on a server without tracing);
            # without steps to go by, only switching them off leaves /trace to ask.
            steps = enrichment.steps
            wanted = (
                any(step.trace_id for step in steps) if steps is not None else not self.options.enrich_steps
            )
        return wanted and self.trace_storage.claim()

    def _trace_complete(self, enrichment: Enrichment) -> bool:
        """Only an exported trace waits for stragglers; the TTFT fallback takes what is there."""
        return self.traces is None or trace_settled(enrichment.trace_rows, enrichment.steps)

    async def _read_trace(self, run_id: str) -> list[dict[str, Any]] | None:
        """The run's /trace rows; ``None`` when Letta has no trace storage (501, which is not a
        failure: it is remembered, and the run goes on without rows)."""
        try:
            rows = await self.client.run_trace(run_id)
        except LettaNotImplemented as exc:
            self.trace_storage.unavailable(str(exc))
            return None
        except LettaNotFound:
            return None  # this run's trace is gone; whether the run is, the other sources tell
        except LettaError:
            self.trace_storage.probe_failed()
            raise
        self.trace_storage.answered()
        return rows

    def _record(self, entry: PendingRun) -> None:
        outcome = compute_outcome(entry.run, entry.enrichment)
        # Recording and marking finalised happen in one synchronous step: nothing can interleave.
        self.metrics.record(outcome)
        self.tracker.finalise(entry.run.id)
        if self.traces is not None:
            # Non-blocking and exception-free: builds the spans and queues them for export.
            self.traces.submit(entry.run, entry.enrichment)

    # -- agent names -----------------------------------------------------------------------------

    async def refresh_agent_names(self, per_tick: int = 20) -> None:
        now = self.clock()
        due = [
            agent_id
            for agent_id in self.metrics.agents.admitted
            if is_safe_id(agent_id)
            and now - self._agent_names_checked.get(agent_id, float("-inf")) > self.options.agent_name_refresh
        ][:per_tick]
        if not due:
            return

        async def one(agent_id: str) -> None:
            async with self._semaphore:
                try:
                    agent = await self.client.retrieve_agent(agent_id)
                except LettaNotFound:
                    self._agent_names_checked[agent_id] = now
                    return
                except LettaError as exc:
                    log.debug("agent %s name lookup failed: %s", agent_id, exc)
                    return
            self._agent_names_checked[agent_id] = now
            if agent.name:
                self._agent_names[agent_id] = agent.name

        await asyncio.gather(*(one(agent_id) for agent_id in due))
        self.metrics.set_agent_names(self._agent_names)
