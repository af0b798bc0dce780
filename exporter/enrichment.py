"""Enrichment: each finished run's figures read and the run recorded, by a pool of workers that
drain a queue continuously, not once per poll. A worker reads the sources the run's figures still
need, in the order exporter/figures.py gives, puts the run back after a delay for data Letta writes
late or a read that failed, and records it in one synchronous step: outcome → metrics, tracker
finalised, spans queued. docs/architecture.md ("Run lifecycle", step 4, and "Pipeline") has the
waits and how a 404 is read; docs/servers.md ("A missing endpoint is not a missing run") why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from exporter import defaults
from exporter.families import Lost, Phase
from exporter.figures import NOTHING, Source, next_source, resolve, unsettled
from exporter.figures import without as lost_without
from exporter.letta.availability import EndpointAvailability
from exporter.letta.client import Endpoint, LettaClient
from exporter.letta.errors import LettaError, LettaNotFound, LettaNotImplemented
from exporter.outcome import compute_outcome
from exporter.prometheus import ExporterMetrics
from exporter.steps_stream import StepsStream
from exporter.traces.rows import trace_settled, ttft_ns_from_rows
from exporter.tracker import PendingRun, RunTracker

if TYPE_CHECKING:
    from exporter.cost.pricing import Pricing
    from exporter.traces.pipeline import TracePipeline

log = logging.getLogger(__name__)

# The API operation behind each per-run source (its name in letta_exporter_api_requests_total and
# letta_exporter_endpoint_available).
ENDPOINTS: dict[Source, str] = {
    Source.STEPS: Endpoint.LIST_STEPS_FOR_RUN,
    Source.RUN_METRICS: Endpoint.RETRIEVE_METRICS_FOR_RUN,
    Source.USAGE: Endpoint.RETRIEVE_USAGE_FOR_RUN,
    Source.TRACE: Endpoint.RETRIEVE_TRACE_FOR_RUN,
}
SOURCES = {endpoint: source for source, endpoint in ENDPOINTS.items()}
# Runs in a row that exist yet get a 404 naming the thing asked for, before the endpoint counts as
# missing on a server whose unknown-route 404 does not read as FastAPI's.
MISSING_AFTER_RUNS = 3


@dataclass(frozen=True)
class EnrichOptions:
    workers: int = defaults.CONCURRENCY
    usage: bool = defaults.ENRICH_USAGE
    run_metrics: bool = defaults.ENRICH_METRICS  # read /v1/runs/{id}/metrics
    steps: bool = defaults.ENRICH_STEPS
    trace: bool = defaults.ENRICH_TRACE
    max_failures: int = 5
    max_settle_checks: int = 4  # with settle_delay doubling: looks over about 15 settle delays
    retry_delay: float = defaults.POLL_INTERVAL  # after a failed read: about a poll interval
    settle_delay: float = 0.25  # after Letta listed a run before writing its figures; doubles each look
    max_listing_wait: float = 30.0  # seconds a look waits for the run to be listed again, at most
    late_window: float = 30.0  # seconds after its end past which a run's late figures are not waited for


class Verdict(Enum):
    RECORD = "record"
    RETRY = "retry"  # a read failed: try again after retry_delay
    SETTLE = "settle"  # Letta has not written everything yet: look again after settle_delay
    GONE = "gone"  # deleted in Letta
    WAIT = "wait"  # for the steps stream to cover the run: it hands the run back


class _Gone(Exception):
    pass


class _Wait(Exception):
    pass


class _Failed(Exception):
    pass


class Enricher:
    def __init__(
        self,
        client: LettaClient,
        tracker: RunTracker,
        metrics: ExporterMetrics,
        options: EnrichOptions,
        *,
        availability: EndpointAvailability,
        traces: TracePipeline | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        self.client = client
        self.pricing = pricing
        self.tracker = tracker
        self.metrics = metrics
        self.options = options
        self.traces = traces
        self.availability = availability
        self.stream: StepsStream | None = None  # where the runs' steps come from, when not per run
        self._usable = {
            Source.RUN: True,
            Source.STEPS: options.steps,
            Source.RUN_METRICS: options.run_metrics,
            Source.USAGE: options.usage,
            Source.TRACE: options.trace,
        }
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.waiting: set[str] = set()  # runs waiting for the steps stream
        self._lacking: dict[str, set[str]] = {}  # endpoint -> runs in a row that exist but lack it
        self.last_failure = ""  # the last read that failed, for the log's "not recording" line

    def usable(self, source: Source) -> bool:
        return self._usable[source]

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

    def resume(self, run_id: str) -> None:
        """Hand back a run that waited for the steps stream."""
        if run_id in self.waiting:
            self.waiting.discard(run_id)
            self.submit(run_id)

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
                self.metrics.poll_errors.labels(Phase.ENRICH).inc()
                log.exception("enriching run %s failed unexpectedly; trying again later", run_id)
                if run_id in self.tracker.pending:
                    self._later(run_id, self.options.retry_delay)
            finally:
                self._queue.task_done()

    async def _handle(self, run_id: str) -> None:
        entry = self.tracker.pending.get(run_id)
        if entry is None:
            return  # forgotten meanwhile (deleted in Letta)
        verdict, figures = await self.enrich(entry)
        if verdict is Verdict.RECORD:
            self._record(entry, figures)
        elif verdict is Verdict.GONE:
            self.tracker.forget(run_id)
            self.metrics.lose(Lost.DELETED, f"run {run_id} was deleted in Letta before its figures were read")
        elif verdict is Verdict.WAIT:
            self.waiting.add(run_id)
        elif verdict is Verdict.RETRY:
            self._later(run_id, self.options.retry_delay)
        else:  # Letta writes late data within moments: look soon, then less often
            self._later(run_id, self.options.settle_delay * 2 ** max(0, entry.settle_checks - 1))

    # -- one run -----------------------------------------------------------------------------------

    async def enrich(self, entry: PendingRun) -> tuple[Verdict, dict[str, Any]]:
        """Read what the run's figures still need, and say what to do with it next (with RECORD, the
        figures to record)."""
        options, reads, run = self.options, entry.reads, entry.run
        failed: list[Source] = []
        try:
            while (source := next_source(run, reads, self.usable)) is not None:
                reads.data[source] = await self._read_source(source, entry, failed)
            if self.traces is not None and options.trace and reads.trace_rows is None:
                await self._read_source(Source.TRACE, entry, failed)  # every run's spans are exported
            if entry.check_stream and reads.steps is not None:
                await self._check_stream(entry)
        except _Gone:
            return Verdict.GONE, {}
        except _Wait:
            return Verdict.WAIT, {}
        if failed:
            entry.failures += 1
            if entry.failures <= options.max_failures:
                for source in failed:
                    del reads.data[source]  # read again on the retry
                return Verdict.RETRY, {}
            for source in failed:
                self.metrics.enrichment_given_up.labels(source.value).inc()
            log.warning("recording run %s without %s after %d tries", run.id,
                        ", ".join(failed), entry.failures)  # fmt: skip
        # Letta writes a run's late figures within moments of its end: a run that ended long before
        # the newest run listed (a backlog, a restart) gets no looks for them.
        watermark, ended = self.tracker.watermark, run.completed_at
        long_ended = (
            watermark is not None
            and ended is not None
            and (watermark - ended.timestamp() > options.late_window)
        )
        may_settle = entry.settle_checks < options.max_settle_checks and not long_ended
        figures = resolve(run, reads, self.usable, may_settle=may_settle)
        # Only an exported trace waits for stragglers (spans reach trace storage in batches); the
        # TTFT fallback takes what is there.
        trace_late = self.traces is not None and not trace_settled(reads.trace_rows, reads.steps)
        if may_settle and (figures is None or trace_late):
            stale = unsettled(run, reads)
            # A look counts once something was read again: a late source of the run's own, or the run
            # itself, listed again since the last look (while discoveries fail, say under a storm of
            # 5xx, the run waits rather than fall back to a weaker source; but not forever).
            now = time.monotonic()
            relisted = entry.relistings > entry.relistings_seen
            if stale or trace_late or relisted or now - entry.looked_at > options.max_listing_wait:
                entry.settle_checks += 1
                entry.looked_at = now
            entry.relistings_seen = entry.relistings
            for source in stale:
                del reads.data[source]
            if trace_late:
                reads.data.pop(Source.TRACE, None)
                reads.trace_rows = None
            entry.settling = True
            return Verdict.SETTLE, {}
        return Verdict.RECORD, figures or {}

    async def _read_source(self, source: Source, entry: PendingRun, failed: list[Source]) -> Any:
        run_id = entry.run.id
        client = self.client
        if source is Source.STEPS and self.stream is not None and self.stream.delivers(entry):
            raise _Wait  # the stream reads them for many runs at once
        calls: dict[Source, Callable[[], Awaitable[Any]]] = {
            Source.STEPS: lambda: client.run_steps(run_id),
            Source.RUN_METRICS: lambda: client.run_metrics(run_id),
            Source.USAGE: lambda: client.run_usage(run_id),
            Source.TRACE: lambda: self._read_trace(entry),
        }
        try:
            return await self.read_endpoint(ENDPOINTS[source], run_id, calls[source])
        except _Failed:
            failed.append(source)
            return NOTHING

    async def _read_trace(self, entry: PendingRun) -> int | None:
        rows = await self.client.run_trace(entry.run.id)
        entry.reads.trace_rows = rows
        return ttft_ns_from_rows(rows) if rows else None

    async def read_endpoint(self, endpoint: str, run_id: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One per-run read, or NOTHING when this server lacks the endpoint (or this run its row).
        Raises ``_Gone`` when the run itself is gone, ``_Failed`` on an error worth a retry."""
        availability = self.availability
        if not await availability.claim(endpoint):
            return NOTHING
        try:
            data = await call()
        except LettaNotFound as exc:
            if exc.unknown_route:
                availability.missing(endpoint, "404 Not Found: no such route")
                return NOTHING
            availability.answered(endpoint)
            if await self._run_gone(run_id):
                raise _Gone from None
            self._lacks(endpoint, run_id)
            return NOTHING
        except LettaNotImplemented as exc:
            availability.missing(endpoint, f"501: {exc.detail}")
            return NOTHING
        except LettaError as exc:
            availability.probe_failed(endpoint)
            self.metrics.enrichment_failures.labels(SOURCES[endpoint]).inc()
            self.last_failure = str(exc)
            log.debug("enrichment %s failed: %s", endpoint, exc)
            raise _Failed from None
        except BaseException:
            availability.probe_failed(endpoint)
            raise
        availability.answered(endpoint)
        self._lacking.pop(endpoint, None)
        return NOTHING if data is None else data

    async def _run_gone(self, run_id: str) -> bool:
        """Whether the run itself is gone (404 for it); a 404 for one of its parts says only that."""
        try:
            await self.client.retrieve_run(run_id)
        except LettaNotFound:
            return True
        except LettaError as exc:
            log.debug("could not tell whether run %s still exists: %s", run_id, exc)
            raise _Failed from None
        return False

    def _lacks(self, endpoint: str, run_id: str) -> None:
        """The run exists but ``endpoint`` has nothing for it: this run's row is missing, or, when
        several runs in a row find the same, the server lacks the endpoint."""
        runs = self._lacking.setdefault(endpoint, set())
        runs.add(run_id)
        if len(runs) >= MISSING_AFTER_RUNS:
            self.availability.missing(endpoint, f"404 for {len(runs)} runs in a row that exist")
            del self._lacking[endpoint]

    async def _check_stream(self, entry: PendingRun) -> None:
        """The sampled cross-check: the run's steps read per run, against what the stream gave."""
        assert self.stream is not None
        run_id = entry.run.id
        try:
            per_run = await self.read_endpoint(
                ENDPOINTS[Source.STEPS], run_id, lambda: self.client.run_steps(run_id)
            )
        except _Failed:
            return  # checked on another run
        entry.check_stream = False
        if per_run is not NOTHING:
            entry.reads.data[Source.STEPS] = self.stream.checked(entry, entry.reads.steps or [], per_run)

    def _record(self, entry: PendingRun, figures: dict[str, Any]) -> None:
        if entry.run.id not in self.tracker.pending:
            return  # forgotten while its reads were under way
        outcome = compute_outcome(entry.run, figures, self.pricing)
        # Recording and marking finalised happen in one synchronous step: nothing can interleave.
        self.metrics.record(outcome)
        self.tracker.finalise(entry.run.id)
        if self.traces is not None:
            # Non-blocking and exception-free: builds the spans and queues them for export.
            self.traces.submit(entry.run, entry.reads, ttft_ns=figures.get("ttft_ns"))


def without(endpoint: str) -> str:
    """What this server lacking a per-run endpoint costs, figure by figure (for the log)."""
    return lost_without(SOURCES[endpoint]) if endpoint in SOURCES else ""
