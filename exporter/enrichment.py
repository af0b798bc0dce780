"""Enrichment: each finished run's details read and the run recorded, by a pool of workers that
drain a queue continuously, not once per poll (docs/architecture.md, "Pipeline").

Discovery admits finished runs to the tracker's bounded ``pending`` set and puts their IDs here. A
worker reads what the run needs (``/metrics``, ``/steps``, ``/usage`` only without steps, ``/trace``
when wanted), waits for data Letta writes late by putting the run back after a delay, and records it
in one synchronous step: outcome → metrics, tracker finalised, spans queued. A run is never recorded
twice, and one whose reads keep failing is recorded without that source in the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaError, LettaNotFound, LettaNotImplemented
from exporter.letta.models import Run
from exporter.metrics import ExporterMetrics
from exporter.outcome import Enrichment, compute_outcome, has_settled
from exporter.traces.availability import Claim, TraceAvailability
from exporter.traces.rows import trace_settled, ttft_ns_from_rows
from exporter.tracker import PendingRun, RunTracker

if TYPE_CHECKING:
    from exporter.traces.pipeline import TracePipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnrichOptions:
    workers: int = 4
    usage: bool = True
    run_metrics: bool = True  # read /v1/runs/{id}/metrics
    steps: bool = True
    trace: bool = True
    max_failures: int = 5
    max_settle_checks: int = 4  # with settle_delay doubling: looks over about 15 settle delays
    retry_delay: float = 10.0  # after a failed read: about a poll interval
    settle_delay: float = 0.25  # after Letta listed a run before writing its figures; doubles each look


class Verdict(Enum):
    RECORD = "record"
    RETRY = "retry"  # a read failed: try again after retry_delay
    SETTLE = "settle"  # Letta has not written everything yet: look again after settle_delay
    GONE = "gone"  # deleted in Letta


class Enricher:
    def __init__(
        self,
        client: LettaClient,
        tracker: RunTracker,
        metrics: ExporterMetrics,
        options: EnrichOptions,
        *,
        traces: TracePipeline | None = None,
        trace_availability: TraceAvailability,
    ) -> None:
        self.client = client
        self.tracker = tracker
        self.metrics = metrics
        self.options = options
        self.traces = traces
        self.trace_availability = trace_availability
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # -- the queue ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (once, in the running loop), with every run already pending queued:
        those restored from the state file included."""
        if self._workers:
            return
        for run_id in self.tracker.pending:
            self._queue.put_nowait(run_id)
        self._workers = [
            asyncio.create_task(self._work(), name=f"enrich-{n}") for n in range(self.options.workers)
        ]

    def submit(self, run_id: str) -> None:
        """Queue a run just admitted to the tracker's pending set (so the queue is bounded by it)."""
        if self._workers:
            self._queue.put_nowait(run_id)

    @property
    def depth(self) -> int:
        """Runs ready and waiting for a worker."""
        return self._queue.qsize()

    async def join(self) -> None:
        """Until every run ready now has been through a worker (runs waiting on a delay excepted)."""
        await self._queue.join()

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def _later(self, run_id: str, delay: float) -> None:
        def requeue() -> None:
            self._timers.pop(run_id, None)
            self._queue.put_nowait(run_id)

        self._timers[run_id] = asyncio.get_running_loop().call_later(delay, requeue)

    async def _work(self) -> None:
        while True:
            run_id = await self._queue.get()
            try:
                await self._handle(run_id)
            except Exception:
                self.metrics.poll_errors.labels("enrich").inc()
                log.exception("enriching run %s failed unexpectedly; trying again later", run_id)
                if run_id in self.tracker.pending:
                    self._later(run_id, self.options.retry_delay)
            finally:
                self._queue.task_done()

    async def _handle(self, run_id: str) -> None:
        entry = self.tracker.pending.get(run_id)
        if entry is None:
            return  # forgotten meanwhile (deleted in Letta)
        verdict = await self.enrich(entry)
        if verdict is Verdict.RECORD:
            self._record(entry)
        elif verdict is Verdict.GONE:
            self.tracker.forget(run_id)
            self.metrics.runs_lost.labels("deleted").inc()
        elif verdict is Verdict.RETRY:
            self._later(run_id, self.options.retry_delay)
        else:  # Letta writes late data within moments: look soon, then less often
            self._later(run_id, self.options.settle_delay * 2 ** max(0, entry.settle_checks - 1))

    # -- one run -----------------------------------------------------------------------------------

    async def enrich(self, entry: PendingRun) -> Verdict:
        """Read what the run still lacks, and say what to do with it next."""
        options = self.options
        enrichment = entry.enrichment
        run_id = entry.run.id
        failed: list[str] = []
        try:
            if options.run_metrics and enrichment.run_metrics is None:
                enrichment.run_metrics = await self._read("metrics", failed, self.client.run_metrics(run_id))
            if options.steps and enrichment.steps is None:
                enrichment.steps = await self._read("steps", failed, self.client.run_steps(run_id))
            # Steps carry every token figure /usage has (and more), so /usage is read only when
            # steps are switched off: one API call fewer per run.
            if options.usage and not options.steps and enrichment.usage is None:
                enrichment.usage = await self._read("usage", failed, self.client.run_usage(run_id))
            if await self._trace_claim(entry.run, enrichment) is Claim.READ:
                rows = await self._read("trace", failed, self._read_trace(run_id))
                enrichment.trace_rows = rows
                enrichment.ttft_ns_from_trace = ttft_ns_from_rows(rows) if rows else None
        except LettaNotFound:
            return Verdict.GONE
        if failed:
            entry.failures += 1
            if entry.failures <= options.max_failures:
                return Verdict.RETRY
            for source in failed:
                self.metrics.enrichment_given_up.labels(source).inc()
            log.warning("recording run %s without %s after %d tries", run_id, ", ".join(failed),
                        entry.failures)  # fmt: skip
            return Verdict.RECORD
        if entry.settle_checks < options.max_settle_checks:
            # Listed finished before Letta wrote its duration, or before its spans reached trace
            # storage (written in batches): look again in a moment.
            metrics_late = options.run_metrics and not has_settled(entry.run, enrichment)
            # Only an exported trace waits for stragglers; the TTFT fallback takes what is there.
            trace_late = self.traces is not None and not trace_settled(
                enrichment.trace_rows, enrichment.steps
            )
            if metrics_late or trace_late:
                entry.settle_checks += 1
                if metrics_late:
                    enrichment.run_metrics = None
                if trace_late:
                    enrichment.trace_rows = None
                return Verdict.SETTLE
        return Verdict.RECORD

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

    async def _trace_claim(self, run: Run, enrichment: Enrichment) -> Claim:
        """/trace is read for trace export, or for the TTFT when the run lacks one and its steps
        name a trace (each read is an API call, so not otherwise), and not while Letta has no trace
        storage, bar the odd probe."""
        if not self.options.trace or enrichment.trace_rows is not None:
            return Claim.SKIP
        wanted = self.traces is not None  # trace export reads /trace for every run
        if not wanted and run.ttft_ns is None:
            # Steps name their trace when Letta traced the run (null on a server without tracing);
            # without steps to go by, only switching them off leaves /trace to ask.
            steps = enrichment.steps
            wanted = any(step.trace_id for step in steps) if steps is not None else not self.options.steps
        # Until /trace has answered once, one run asks and the others wait for its answer.
        return await self.trace_availability.claim() if wanted else Claim.SKIP

    async def _read_trace(self, run_id: str) -> list[dict[str, Any]] | None:
        """The run's /trace rows; ``None`` when Letta has no trace storage (501, which is not a
        failure: it is remembered, and the run goes on without rows)."""
        try:
            rows = await self.client.run_trace(run_id)
        except LettaNotImplemented as exc:
            self.trace_availability.unavailable(str(exc))
            return None
        except LettaNotFound:
            # This run's trace is gone (whether the run is, the other sources tell); the endpoint
            # itself answers.
            self.trace_availability.answered()
            return None
        except BaseException:  # a transient error, or a bug: either way the next run may ask
            self.trace_availability.probe_failed()
            raise
        self.trace_availability.answered()
        return rows

    def _record(self, entry: PendingRun) -> None:
        if entry.run.id not in self.tracker.pending:
            return  # forgotten while its reads were under way
        outcome = compute_outcome(entry.run, entry.enrichment)
        # Recording and marking finalised happen in one synchronous step: nothing can interleave.
        self.metrics.record(outcome)
        self.tracker.finalise(entry.run.id)
        if self.traces is not None:
            # Non-blocking and exception-free: builds the spans and queues them for export.
            self.traces.submit(entry.run, entry.enrichment)
