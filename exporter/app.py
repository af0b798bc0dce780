"""Wiring: settings → client, tracker, metrics, poller → scheduler and HTTP server; clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter import __version__, active, steps_stream
from exporter.activity import ActivityLog
from exporter.breaker import CircuitBreaker
from exporter.config import Settings
from exporter.cost.pricing import Pricing
from exporter.discovery import Discovery, DiscoveryOptions, reaches
from exporter.enrichment import Enricher, EnrichOptions, without
from exporter.families import Phase, Result
from exporter.letta.availability import EndpointAvailability
from exporter.letta.client import Endpoint, LettaClient
from exporter.names import NameLookup
from exporter.poller import Poller
from exporter.prometheus import ExporterMetrics
from exporter.server import HttpServer, Status, make_app
from exporter.state import StateError, StateFile, capture, restore
from exporter.steps_stream import StepsStream, StreamOptions
from exporter.traces.pipeline import TracePipeline, build_pipeline
from exporter.tracker import RunTracker
from exporter.webconfig import BasicAuth, WebConfig, load_web_config

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS = 3.0
# Shutdown as a whole stays under 5 s; queued spans get what is left of this, at least a moment.
SHUTDOWN_DEADLINE_SECONDS = 4.5
TRACE_FLUSH_SECONDS = (0.2, 2.0)


@dataclass
class Exporter:
    settings: Settings
    metrics: ExporterMetrics
    client: LettaClient
    tracker: RunTracker
    poller: Poller
    enricher: Enricher
    save_state: Callable[[], Awaitable[None]] | None = None
    traces: TracePipeline | None = None


def build_exporter(settings: Settings) -> Exporter:
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics = ExporterMetrics(
        registry,
        agent_label=settings.agent_label,
        max_agents=settings.max_agents,
        ttft_buckets=settings.ttft_buckets,
        duration_buckets=settings.duration_buckets,
    )
    client = LettaClient(
        settings.base_url,
        api_key=settings.api_key_value(),
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        max_requests_per_second=settings.request_rate_ceiling(),
        max_connections=2 * settings.concurrency + 4,  # workers, discovery's own reads, look-ups
        observer=metrics,
    )
    metrics.request_rate.set_function(lambda: client.limiter.limit)
    short_reach, deep_every, reach = reaches(settings.discovery_overlap, settings.poll_interval)
    tracker = RunTracker(overlap=reach, capacity=settings.max_pending)
    availability = EndpointAvailability(
        settings.trace_probe_interval, costs=_costs, on_change=metrics.endpoint_changed
    )
    traces = build_pipeline(
        metrics.spans_exported, traces=settings.traces, denylist=settings.trace_attribute_denylist,
        synthesis=settings.trace_synthesis, reparent_orphans=settings.trace_reparent_orphans,
        on_malformed=lambda count: metrics.api_malformed.labels(Endpoint.RETRIEVE_TRACE_FOR_RUN).inc(count),
    )  # fmt: skip
    pricing = Pricing.build(settings.prices)
    log.info("cost: prices from %s", pricing.describe())
    enricher = Enricher(
        client,
        tracker,
        metrics,
        EnrichOptions(
            workers=settings.concurrency,
            usage=settings.enrich_usage,
            run_metrics=settings.enrich_metrics,
            steps=settings.enrich_steps,
            trace=settings.enrich_trace,
            retry_delay=settings.poll_interval,
            settle_delay=min(EnrichOptions.settle_delay, settings.poll_interval),
        ),
        availability=availability,
        traces=traces,
        pricing=pricing,
    )
    stream = None
    if settings.enrich_steps and settings.steps_source != "per_run":
        stream = StepsStream(client, tracker, availability, StreamOptions(settings.steps_source),
                             resume=enricher.resume)  # fmt: skip
        enricher.stream = stream
    discovery = Discovery(
        client,
        tracker,
        metrics,
        DiscoveryOptions(page_size=settings.page_size, concurrency=settings.concurrency,
                         backfill=settings.backfill, short_reach=short_reach, deep_every=deep_every,
                         poll_interval=settings.poll_interval),
        admit=enricher.submit,
        availability=availability,
    )  # fmt: skip
    names: dict[str, NameLookup] = {}

    def calls() -> int:
        return client.requests_sent

    if settings.agent_names and settings.agent_label:
        names[Phase.AGENT_NAMES] = NameLookup("agent", lambda: metrics.agents.admitted, client.retrieve_agent,
                                          metrics.set_agent_names, calls=calls)  # fmt: skip
    if settings.enrich_metrics:  # tools come from each run's /metrics
        names[Phase.TOOL_NAMES] = NameLookup(
            "tool", metrics.tools_used, client.retrieve_tool, metrics.set_tool_names, calls=calls
        )
    breaker = CircuitBreaker(base_pause=max(settings.poll_interval, 1.0))
    activity = ActivityLog(metrics, tracker, client)
    poller = Poller(discovery, enricher, metrics, names=names, breaker=breaker, activity=activity,
                    catch_up=settings.poll_interval / 2, stream=stream)  # fmt: skip
    exporter = Exporter(settings, metrics, client, tracker, poller, enricher, traces=traces)
    if settings.state_file is not None:
        exporter.save_state = attach_state(exporter, StateFile(settings.state_file))
    # After the state save: what is served has been persisted.
    poller.after_tick.append(metrics.exposition.refresh_soon)
    return exporter


def _costs(endpoint: str) -> str:
    """What a server lacking ``endpoint`` costs, for the log line that says it lacks it."""
    if endpoint == steps_stream.ENDPOINT:
        return steps_stream.WITHOUT
    return active.WITHOUT.get(endpoint) or without(endpoint)


def attach_state(exporter: Exporter, store: StateFile) -> Callable[[], Awaitable[None]]:
    """Restore from ``store`` if it holds state, and save to it after every tick."""
    tracker, metrics, poller = exporter.tracker, exporter.metrics, exporter.poller
    try:
        state = store.load()
        if state is not None:
            poller.discovery.baselined = restore(state, tracker, metrics)
            log.info(
                "restored state from %s: %d runs in flight, %d pending, %d recently counted",
                store.path, len(tracker.in_flight), len(tracker.pending), len(tracker.finalised),
            )  # fmt: skip
    except StateError as exc:
        moved = store.quarantine()
        metrics.state_load_failures.inc()
        log.error(
            "state file %s is unreadable (%s); moved aside to %s; starting fresh", store.path, exc, moved
        )

    async def save() -> None:
        snapshot = capture(tracker, metrics, baselined=poller.discovery.baselined)
        try:
            await asyncio.to_thread(store.save, snapshot)
        except OSError as exc:
            metrics.state_saves.labels(Result.FAILURE).inc()
            log.warning("could not write state file %s: %s", store.path, exc.strerror)
            return
        metrics.state_saves.labels(Result.SUCCESS).inc()

    poller.after_tick.append(save)
    return save


def metrics_url(settings: Settings, port: int, tls: bool) -> str:
    host = settings.listen_address
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}/metrics"


async def serve(settings: Settings, on_serving: Callable[[str], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT arrives; then stop within a few seconds. ``on_serving`` is called
    with the /metrics URL once it is served."""
    stop = asyncio.Event()
    exporter = build_exporter(settings)
    poller = exporter.poller
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    web = load_web_config(settings.web_config_file) if settings.web_config_file else WebConfig()
    auth = BasicAuth(web.users) if web.users else None
    status = Status(settings.base_url, lambda: poller.last_success_at)
    server = HttpServer(
        make_app(exporter.metrics.exposition, poller.ready.is_set, auth, status),
        settings.listen_address,
        settings.port,
        ssl_context=web.ssl_context() if web.tls else None,
    ).start()
    url = metrics_url(settings, server.port, web.tls)
    log.info(
        "letta-exporter %s polling %s every %ss; serving %s%s",
        __version__, settings.base_url, settings.poll_interval, url, " (basic auth)" if auth else "",
    )  # fmt: skip
    if on_serving is not None:
        on_serving(url)

    scheduler = AsyncIOScheduler()

    async def poll() -> None:
        try:
            await poller.tick()
        except asyncio.CancelledError:
            # Shutdown cancels a poll in flight; every record is atomic, so nothing is half-done
            # and there is nothing to report.
            log.debug("poll cancelled by shutdown")

    scheduler.add_job(
        poll,
        "interval",
        seconds=settings.poll_interval,
        next_run_time=datetime.now(),
        max_instances=1,  # ticks never overlap
        coalesce=True,
        misfire_grace_time=None,
        id="poll",
    )
    scheduler.start()
    # With nothing persisted there is nothing for /metrics to wait for: runs the workers record
    # between polls are served within a moment (a rendering is still rationed by its cost).
    fresh = None if exporter.save_state is not None else asyncio.create_task(_render_often(exporter))
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        started = time.monotonic()
        scheduler.shutdown(wait=False)
        if fresh is not None:
            fresh.cancel()
        await poller.stop(grace=SHUTDOWN_GRACE_SECONDS)
        if exporter.save_state is not None:
            await exporter.save_state()
        if exporter.traces is not None:
            low, high = TRACE_FLUSH_SECONDS
            budget = min(high, max(low, SHUTDOWN_DEADLINE_SECONDS - (time.monotonic() - started)))
            await asyncio.to_thread(exporter.traces.shutdown, budget)
        server.stop()
        await exporter.client.aclose()


async def _render_often(exporter: Exporter, every: float = 0.1, cheap: float = 0.05) -> None:
    """Between polls, re-render /metrics when runs were recorded and a rendering is cheap; a big
    registry (thousands of agents) keeps to one rendering per poll, since each holds the GIL."""
    totals, exposition = exporter.metrics.totals, exporter.metrics.exposition
    rendered = totals.version
    while True:
        await asyncio.sleep(every)
        version = totals.version
        if version != rendered and exposition.last_took < cheap and await exposition.refresh_soon():
            rendered = version
