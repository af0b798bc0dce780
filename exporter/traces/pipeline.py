"""From a recorded run to OTLP: spans built on the poll loop, queued, exported in the background.

``TracePipeline.submit`` is called once per finalised run, right after its metrics are recorded. It
turns the run's ``/trace`` rows (or, without any, a synthesised trace) into spans and puts them in a
bounded queue, never waiting on the network. A worker thread sends batches with the OpenTelemetry
SDK's OTLP exporter (gRPC or HTTP/protobuf), which retries transient failures with backoff. Every
span ends up counted once in ``letta_exporter_spans_exported_total{result}``: ``success``,
``failure`` (the endpoint refused it or stayed unreachable through the retries) or ``dropped`` (the
queue was full, or it was still queued at shutdown). A run's spans are queued whole or not at all.

Configuration is OpenTelemetry's own: ``OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,PROTOCOL,HEADERS,
TIMEOUT,COMPRESSION,CERTIFICATE,CLIENT_KEY,CLIENT_CERTIFICATE,INSECURE}``, read by the SDK exporter,
and ``OTEL_BSP_{MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE,SCHEDULE_DELAY}`` for the queue.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter

from exporter.letta.models import Run
from exporter.outcome import Enrichment, ttft_ns
from exporter.traces.otlp_env import (
    batch_settings,
    configured_endpoint,
    make_span_exporter,
    otlp_protocol,
    tracing_enabled,
)
from exporter.traces.rows import RowConverter
from exporter.traces.spans import AttributePolicy
from exporter.traces.synth import synthesise

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    from exporter.config import Settings

log = logging.getLogger(__name__)

# -- the pipeline --------------------------------------------------------------------------------


class TracePipeline:
    """Spans for finalised runs: built on the caller's thread, exported on a worker thread."""

    wants_rows = True  # the poller reads /trace for every run while this is on

    def __init__(
        self,
        exporter: SpanExporter,
        counter: Counter,
        *,
        policy: AttributePolicy | None = None,
        synthesis: bool = True,
        reparent_orphans: bool = False,
        max_queue: int = 2048,
        max_batch: int = 512,
        delay: float = 5.0,
        on_malformed: Callable[[int], None] | None = None,
    ) -> None:
        self.exporter = exporter
        self.counter = counter
        self.policy = policy or AttributePolicy.from_settings("")
        self.converter = RowConverter(self.policy, reparent=reparent_orphans)
        self.synthesis = synthesis
        self.max_queue = max_queue
        self.max_batch = max(1, min(max_batch, max_queue))
        self.delay = delay
        self.on_malformed = on_malformed
        self._queue: deque[ReadableSpan] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flushing = 0
        self._exporting = False
        self._failing = False
        self._dropping = False

    # -- the poll loop's side ------------------------------------------------------------------

    def spans_for(self, run: Run, enrichment: Enrichment) -> list[ReadableSpan]:
        """Letta's own spans where ``/trace`` gave some, else (when switched on) a synthesised trace."""
        rows = enrichment.trace_rows
        if rows:
            spans, skipped = self.converter.convert(rows)
            if skipped:
                log.debug("run %s: %d of %d trace rows could not be read", run.id, skipped, len(rows))
                if self.on_malformed is not None:
                    self.on_malformed(skipped)
            if spans:
                return spans
        if not self.synthesis:
            return []
        return synthesise(run, enrichment.steps, self.policy, ttft_ns=ttft_ns(run, enrichment))

    def submit(self, run: Run, enrichment: Enrichment) -> bool:
        """Queue the run's trace. Never raises and never blocks on the network: the run is already
        recorded, and a trace that cannot be built or queued is logged and counted, not retried."""
        try:
            spans = self.spans_for(run, enrichment)
        except Exception:
            log.exception("could not build the trace of run %s", run.id)
            return False
        log.debug("run %s: %d spans for export", run.id, len(spans))
        return self.enqueue(spans)

    def enqueue(self, spans: Sequence[ReadableSpan]) -> bool:
        if not spans:
            return True
        with self._cond:
            if self._stopping or len(self._queue) + len(spans) > self.max_queue:
                self.counter.labels("dropped").inc(len(spans))
                if not self._dropping:
                    self._dropping = True
                    log.warning(
                        "trace queue full (%d spans): dropping traces until the OTLP endpoint catches up",
                        self.max_queue,
                    )
                return False
            self._queue.extend(spans)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="otlp-traces", daemon=True)
                self._thread.start()
            # Wakes the worker: an idle one starts the batch delay, a waiting one checks the size.
            self._cond.notify_all()
        return True

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    # -- the worker ----------------------------------------------------------------------------

    def _next_batch(self) -> list[ReadableSpan] | None:
        """Wait for a full batch, the delay, a flush or shutdown; ``None`` once stopped and empty."""
        with self._cond:
            deadline: float | None = None
            while True:
                if self._queue and (self._stopping or self._flushing or len(self._queue) >= self.max_batch):
                    break
                if self._stopping:
                    return None
                if not self._queue:
                    deadline = None
                    self._cond.wait()
                    continue
                if deadline is None:
                    deadline = time.monotonic() + self.delay
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._exporting = True
            return [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]

    def _work(self) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        while (batch := self._next_batch()) is not None:
            try:
                ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
            except Exception:
                log.exception("OTLP span export raised")
                ok = False
            self.counter.labels("success" if ok else "failure").inc(len(batch))
            with self._cond:
                self._exporting = False
                if ok:
                    if self._failing:
                        log.info("OTLP span export works again")
                    self._failing = self._dropping = False
                elif not self._failing:
                    self._failing = True
                    log.warning("could not export %d spans over OTLP; will keep trying with new ones",
                                len(batch))  # fmt: skip
                self._cond.notify_all()

    # -- flush and shutdown --------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Export everything queued now; True when the queue drained within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._queue or self._exporting:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._thread is None:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushing -= 1

    def shutdown(self, timeout: float) -> None:
        """Send what is queued within ``timeout``, then stop; spans left over are counted dropped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        if left:
            self.counter.labels("dropped").inc(left)
            log.warning("%d trace spans were still queued at shutdown and are lost", left)
        # Interrupts the exporter's retry backoff and closes its connections; a batch still in
        # flight ends as a failure.
        self.exporter.shutdown()


def build_pipeline(
    settings: Settings,
    counter: Counter,
    *,
    on_malformed: Callable[[int], None] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> TracePipeline | None:
    """The pipeline the settings and ``OTEL_*`` variables ask for, or ``None`` with tracing off."""
    if not tracing_enabled(settings.traces, environ):
        return None
    pipeline = TracePipeline(
        make_span_exporter(environ),
        counter,
        policy=AttributePolicy.from_settings(settings.trace_attribute_denylist, environ),
        synthesis=settings.trace_synthesis,
        reparent_orphans=settings.trace_reparent_orphans,
        on_malformed=on_malformed,
        **batch_settings(environ),
    )
    log.info(
        "exporting run traces over OTLP (%s) to %s", otlp_protocol(environ),
        configured_endpoint(environ) or "the default local endpoint",
    )  # fmt: skip
    return pipeline
