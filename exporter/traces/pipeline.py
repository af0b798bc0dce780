"""From a recorded run to OTLP: spans built on the poll loop, queued, exported in the background.

``TracePipeline.submit`` is called once per finalised run, right after its metrics are recorded. It
turns the run's ``/trace`` rows (or, without any, a synthesised trace) into spans and queues them,
whole or not at all, never waiting on the network; the OpenTelemetry SDK's batch span processor
sends them with its OTLP exporter. Every span ends up counted once in
``letta_exporter_spans_exported_total{result}``. The variables it reads and what each result means:
docs/traces.md ("Configuration", "Delivery").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import Counter

from exporter.defaults import OTEL_BSP
from exporter.families import Result
from exporter.figures import Reads
from exporter.letta.models import Run
from exporter.traces.otlp_env import (
    batch_settings,
    configured_endpoint,
    make_span_exporter,
    otlp_protocol,
    tracing_enabled,
)
from exporter.traces.rows import convert_rows
from exporter.traces.spans import AttributePolicy
from exporter.traces.synth import synthesise

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

log = logging.getLogger(__name__)

# -- the pipeline --------------------------------------------------------------------------------


class TracePipeline:
    """Spans for finalised runs: built on the caller's thread, exported by the SDK's batch processor.

    The admission, timeouts and drop counts here are what that processor lacks (opentelemetry-sdk
    1.45.2, ``sdk/_shared_internal/__init__.py``). On a full queue ``emit`` evicts the oldest span,
    telling only its log and an opt-in OTel metric (:199-203): a queued run would lose spans and the
    drop count miss them, so a run is let in only whole and only while it fits, the queue's length
    being spans handed over less spans the exporter has taken. ``shutdown`` has no timeout (30 s,
    :207-215), ``force_flush`` ignores its own (:231), and spans still queued when shutdown gives up
    are abandoned uncounted (:217): both run on a thread waited on for the caller's timeout, and spans
    the exporter has not taken by then are counted dropped."""

    def __init__(
        self,
        exporter: SpanExporter,
        counter: Counter,
        *,
        policy: AttributePolicy | None = None,
        synthesis: bool = True,
        reparent_orphans: bool = False,
        max_queue: int = OTEL_BSP["MAX_QUEUE_SIZE"],
        max_batch: int = OTEL_BSP["MAX_EXPORT_BATCH_SIZE"],
        delay: float = OTEL_BSP["SCHEDULE_DELAY"] / 1000.0,
        on_malformed: Callable[[int], None] | None = None,
    ) -> None:
        self.exporter = exporter
        self.counter = counter
        self.policy = policy or AttributePolicy.from_settings("")
        self.reparent_orphans = reparent_orphans
        self.synthesis = synthesis
        self.max_queue = max_queue
        self.on_malformed = on_malformed
        self._lock = threading.Lock()
        self._handed = self._taken = 0
        self._closed = self._failing = self._dropping = False
        self.processor = BatchSpanProcessor(
            _Counting(self), max_queue, delay * 1000, min(max_batch, max_queue)
        )

    # -- the poll loop's side ------------------------------------------------------------------

    def submit(self, run: Run, reads: Reads, *, ttft_ns: int | None) -> bool:
        """Queue the run's trace: Letta's own spans where ``/trace`` gave some, else (when switched on)
        a synthesised one. Never raises and never blocks on the network: the run is already recorded,
        and a trace that cannot be built or queued is logged and counted, not retried."""
        rows = reads.trace_rows or []
        try:
            spans, skipped = convert_rows(rows, self.policy, reparent=self.reparent_orphans)
            if skipped:
                log.debug("run %s: %d of %d trace rows could not be read", run.id, skipped, len(rows))
                if self.on_malformed is not None:
                    self.on_malformed(skipped)
            if not spans and self.synthesis:
                spans = synthesise(run, reads.steps, self.policy, ttft_ns=ttft_ns)
        except Exception:
            log.exception("could not build the trace of run %s", run.id)
            return False
        log.debug("run %s: %d spans for export", run.id, len(spans))
        return self.enqueue(spans)

    def enqueue(self, spans: Sequence[ReadableSpan]) -> bool:
        if not spans:
            return True
        with self._lock:
            admitted = not self._closed and self.queued + len(spans) <= self.max_queue
            if admitted:
                self._handed += len(spans)
            elif not self._dropping:
                self._dropping = True
                log.warning("trace queue full (%d spans): dropping traces until the OTLP endpoint "
                            "catches up", self.max_queue)  # fmt: skip
        if not admitted:
            self.counter.labels(Result.DROPPED).inc(len(spans))
            return False
        for span in spans:  # all sampled (spans.py), so on_end queues each one
            self.processor.on_end(span)
        return True

    @property
    def queued(self) -> int:
        return self._handed - self._taken

    def export_batch(self, batch: Sequence[ReadableSpan]) -> bool:
        """One batch from the processor's worker; after shutdown its spans are already counted."""
        with self._lock:
            if self._closed:
                return False
            self._taken += len(batch)
        try:
            ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
        except Exception:
            log.exception("OTLP span export raised")
            ok = False
        self.counter.labels(Result.SUCCESS if ok else Result.FAILURE).inc(len(batch))
        with self._lock:
            was_failing, self._failing = self._failing, not ok
            self._dropping &= not ok
        if ok and was_failing:
            log.info("OTLP span export works again")
        elif not ok and not was_failing:
            log.warning("could not export %d spans over OTLP; will keep trying with new ones", len(batch))
        return ok

    # -- flush and shutdown --------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Export everything queued now; True when the queue drained within ``timeout``."""
        return _within(timeout, self.processor.force_flush)

    def shutdown(self, timeout: float) -> None:
        """Send what is queued within ``timeout``, then stop; spans left over are counted dropped."""
        if self._closed:
            return
        _within(timeout, self.processor.shutdown)
        with self._lock:
            self._closed = True
            left = self.queued
        if left:
            self.counter.labels(Result.DROPPED).inc(left)
            log.warning("%d trace spans were still queued at shutdown and are lost", left)
        # Interrupts the exporter's retry backoff and closes its connections; a batch still in
        # flight ends as a failure.
        self.exporter.shutdown()


class _Counting(SpanExporter):
    """What the processor exports to: the pipeline, which counts and forwards each batch. Its
    ``shutdown`` is the SDK's no-op: the pipeline shuts the OTLP exporter down, at the caller's deadline."""

    def __init__(self, pipeline: TracePipeline) -> None:
        self.pipeline = pipeline

    def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS if self.pipeline.export_batch(batch) else SpanExportResult.FAILURE


def _within(timeout: float, call: Callable[[], object]) -> bool:
    """Run ``call`` on a thread; True when it returned within ``timeout``."""
    thread = threading.Thread(target=call, name="otlp-traces-wait", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def build_pipeline(
    counter: Counter, *, traces: bool | None, denylist: str, **options: Any
) -> TracePipeline | None:
    """The pipeline the ``traces`` switch and ``OTEL_*`` variables ask for, or ``None`` with tracing
    off; ``denylist`` and ``options`` as TracePipeline takes them."""
    if not tracing_enabled(traces):
        return None
    policy = AttributePolicy.from_settings(denylist)
    pipeline = TracePipeline(make_span_exporter(), counter, policy=policy, **options, **batch_settings())
    log.info(
        "exporting run traces over OTLP (%s) to %s", otlp_protocol(),
        configured_endpoint() or "the default local endpoint",
    )  # fmt: skip
    return pipeline
