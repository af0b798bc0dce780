"""One poll: discover and track runs, hand finished ones to the enrichment workers, report. A poll
does not wait for enrichment (docs/architecture.md, "Pipeline"). Each phase fails on its own; a
failed poll is counted, logged once with its cause, and the next one starts over from the same
state, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from exporter.activity import ActivityLog
from exporter.breaker import CircuitBreaker
from exporter.discovery import Discovery
from exporter.enrichment import Enricher
from exporter.families import Phase
from exporter.letta.errors import LettaError, explain, failure_reason
from exporter.names import NameLookup
from exporter.prometheus import ExporterMetrics
from exporter.steps_stream import StepsStream
from exporter.tracker import RunTracker

log = logging.getLogger(__name__)


class Poller:
    def __init__(
        self,
        discovery: Discovery,
        enricher: Enricher,
        metrics: ExporterMetrics,
        *,
        names: dict[str, NameLookup],
        breaker: CircuitBreaker,
        activity: ActivityLog,
        catch_up: float,
        stream: StepsStream | None = None,
    ) -> None:
        self.discovery = discovery
        self.enricher = enricher
        self.tracker: RunTracker = discovery.tracker
        self.metrics = metrics
        self.names = names  # poll phase name -> lookup
        self.breaker = breaker
        self.activity = activity
        self.stream = stream
        # How long a poll may wait for the runs it found to be recorded before it publishes: runs
        # found then show in the same poll's /metrics, not the next one's. A backlog is not waited
        # out: the rest is published by later polls.
        self.catch_up = catch_up
        self.ready = asyncio.Event()
        self.last_success_at: float | None = None  # Unix time of the last poll that reached Letta
        self._tick_lock = asyncio.Lock()
        self._ticking: asyncio.Task[Any] | None = None  # the tick under way, for stop() to wait for
        self._failure: BaseException | None = None
        # Called at the end of every tick, e.g. to persist state; their failures are theirs to report.
        self.after_tick: list[Callable[[], Awaitable[object]]] = []

    async def tick(self) -> None:
        if self._tick_lock.locked():
            return  # APScheduler already refuses overlaps; this guards direct callers too
        async with self._tick_lock:
            self._ticking = asyncio.current_task()
            self.enricher.start()
            self.activity.begin()
            if not self.breaker.allow():
                self._publish(False)
                return
            started = time.perf_counter()
            self._failure = None
            reached = await self._phase(Phase.DISCOVER, self.discovery.discover)
            reached = await self._phase(Phase.TRACK, self._track) and reached
            if self.stream is not None:
                await self._phase(Phase.STEPS, self.stream.read)
            self._report(reached)
            if self.discovery.baselined:
                for phase, lookup in self.names.items():
                    await self._phase(phase, lookup.refresh)
            if self.catch_up > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.catch_up):
                        await self.enricher.join()
            self.tracker.prune()
            self._publish(reached)
            self.activity.after_poll(reached, seen=self.discovery.seen, agents=len(self.discovery.agents))
            self.metrics.not_recording.set(1 if self.activity.stalled(self.enricher) else 0)
            for hook in self.after_tick:
                await hook()
            self.metrics.poll_duration.observe(time.perf_counter() - started)

    async def stop(self, grace: float = 0.0) -> None:
        """Let a tick under way finish for ``grace`` seconds, then cancel it (every record is atomic),
        and stop the enrichment workers: a run mid-read stays pending (and in the state file)."""
        ticking = self._ticking
        if ticking is not None and not ticking.done():
            done, _ = await asyncio.wait({ticking}, timeout=grace)
            if not done:
                ticking.cancel()
                await asyncio.wait({ticking}, timeout=1.0)
        await self.enricher.stop()

    async def _track(self) -> None:
        self.metrics.set_active(await self.discovery.track())

    async def _phase(self, name: str, phase: Callable[[], Awaitable[Any]]) -> bool:
        try:
            await phase()
            return True
        except Exception as exc:
            self.metrics.poll_errors.labels(name).inc()
            self._failure = self._failure or exc
            if isinstance(exc, LettaError):
                log.debug("poll phase %s failed: %s", name, exc)
            else:
                log.exception("poll phase %s failed unexpectedly", name)  # a bug: the traceback is the report
        return False

    def _report(self, reached: bool) -> None:
        """One log line per poll that could not reach Letta, naming the first cause and the setting
        to check; one when it is reachable again."""
        failed_before = self.breaker.failures
        pause = self.breaker.poll_ended(reached)
        self.metrics.circuit_open.set(1 if self.breaker.is_open else 0)
        if reached:
            if failed_before:
                log.warning("Letta is reachable again after %d failed polls", failed_before)
            return
        failure = self._failure or LettaError("poll", "unknown error")
        self.metrics.poll_failures.labels(failure_reason(failure)).inc()
        client = self.discovery.client
        message = explain(failure, base_url=client.base_url, key_set=client.key_set)
        if pause is None:
            log.warning("poll failed: %s", message)
        else:
            log.error("poll failed %d times in a row: %s; pausing polls for %.0fs",
                      self.breaker.failures, message, pause)  # fmt: skip

    def _publish(self, reached: bool) -> None:
        metrics, tracker = self.metrics, self.tracker
        metrics.up.set(1 if reached else 0)
        if reached:
            self.last_success_at = time.time()
            metrics.last_success.set(self.last_success_at)
            self.ready.set()
        metrics.tracked.set(tracker.size)
        metrics.pending.set(len(tracker.pending))
        metrics.enrichment_queue.set(self.enricher.depth)
        metrics.oldest_unrecorded_finished_at = tracker.oldest_unrecorded()
