"""Run traces from the simulator to real OTLP receivers (gRPC and HTTP/protobuf, in-process on
loopback) through the real poller, client and pipeline: exact IDs, names, kinds, times, attributes,
events, links, resource and scope; the 501 probe; synthesis; settings; a collector that is down,
slow or a black hole; restarts. And, against an exporter that holds batches, the queue's admission
and shutdown counts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry, Counter

from exporter.app import Exporter, build_exporter
from exporter.cli import check_start_up
from exporter.config import ConfigError, Settings, load_settings
from exporter.enrichment import EnrichOptions
from exporter.simulator import Simulator, TruthRun
from exporter.traces.pipeline import TracePipeline
from exporter.traces.spans import AttributePolicy
from exporter.traces.synth import derived_id
from tests.otlp_receivers import GrpcReceiver, HttpReceiver, Received
from tests.support import (
    ExporterProcess,
    assert_matches_truth,
    make_exporter,
    poll_new_runs,
    run,
    runs_counted,
    select,
    served_samples,
    settle,
    ticks,
    wait_for,
)

# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """A clean OTel environment with a short batch delay; ``otel(receiver, protocol)`` points the
    exporter at a receiver."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")

    def point(receiver: GrpcReceiver | HttpReceiver | str, protocol: str = "grpc", **extra: str) -> None:
        endpoint = receiver if isinstance(receiver, str) else receiver.endpoint
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        for name, value in extra.items():
            monkeypatch.setenv(name, value)

    return point


@pytest.fixture
def receivers() -> Iterator[Callable[..., Any]]:
    started: list[GrpcReceiver | HttpReceiver] = []

    def start(kind: str = "grpc", port: int = 0) -> Any:
        receiver = (GrpcReceiver() if kind == "grpc" else HttpReceiver()).start(port)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def exporters() -> Iterator[Callable[..., Exporter]]:
    """In-process exporters against a simulator; their pipelines are shut down afterwards."""
    built: list[Exporter] = []

    def make(sim: Simulator, **settings: Any) -> Exporter:
        exporter = make_exporter(sim, **settings)
        built.append(exporter)
        return exporter

    yield make
    for exporter in built:
        if exporter.traces is not None:
            exporter.traces.shutdown(1.0)


def counted(
    exporters: Callable[..., Exporter],
    sim: Simulator,
    count: int,
    *,
    flush_after: bool = False,
    **settings: Any,
) -> Exporter:
    """A fresh exporter, its baseline poll, then ``count`` new runs polled until all are counted."""

    async def scenario() -> Exporter:
        exporter = exporters(sim, **settings)
        await poll_new_runs(exporter, sim, count)
        if flush_after:
            await flush(exporter)
        return exporter

    return run(scenario())


def trace_requests(sim: Simulator) -> int:
    return sum(1 for request in sim.requests if request.path.endswith("/trace"))


def span_results(exporter: Exporter) -> dict[str, float]:
    samples = select(served_samples(exporter), "letta_exporter_spans_exported_total", ("result",))
    return {result: samples.get((result,), 0.0) for result in ("success", "failure", "dropped")}


async def flush(exporter: Exporter, timeout: float = 10.0) -> None:
    assert exporter.traces is not None
    assert await asyncio.to_thread(exporter.traces.flush, timeout), "the trace queue did not drain"


def synthesised_span_count(truth: list[TruthRun]) -> int:
    return sum(1 + run.num_steps for run in truth)


def roots_by_run(spans: list[Received]) -> dict[str, Received]:
    return {span.attributes["letta.run.id"]: span for span in spans if span.name == "invoke_agent"}


# -- Letta's spans, exactly ------------------------------------------------------------------------


def expected_attributes(attributes: dict[str, str], policy: AttributePolicy) -> dict[str, str]:
    limit = policy.max_value_length
    return {k: (v[:limit] if limit else v) for k, v in attributes.items() if policy.allowed(k)}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_letta_spans_arrive_with_their_original_ids(
    protocol, sim_factory, otel, receivers, exporters
) -> None:
    receiver = receivers("grpc" if protocol == "grpc" else "http")
    otel(receiver, protocol)
    sim = sim_factory(trace_mode="rows")
    # gRPC: everything through, to compare whole spans; HTTP: the default privacy policy.
    settings = {"trace_attribute_denylist": ""} if protocol == "grpc" else {}
    if protocol == "grpc":
        otel(receiver, protocol, OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="")  # set but empty: unlimited
    policy = AttributePolicy.from_settings(Settings(**settings).trace_attribute_denylist)

    exporter = counted(exporters, sim, 30, flush_after=True, **settings)
    truth = sim.truth()
    traced = [r for r in truth if r.trace_spans]
    untraced = [r for r in truth if not r.trace_spans]
    assert len(traced) >= 8 and untraced, "the seed should give both kinds of run"
    received = receiver.spans()
    by_id = {(span.trace_id, span.span_id): span for span in received}
    assert len(by_id) == len(received), "a span arrived twice"
    expected_total = sum(len(r.trace_spans) for r in traced) + synthesised_span_count(untraced)
    assert len(received) == expected_total
    assert span_results(exporter) == {"success": expected_total, "failure": 0, "dropped": 0}

    hidden_parents = 0
    for truth_run in traced:
        for want in truth_run.trace_spans:
            got = by_id[(want.trace_id, want.span_id)]
            assert got.parent_span_id == want.parent_span_id
            hidden_parents += want.hidden_parent
            assert (got.name, got.kind) == (want.name, Span.SpanKind.Value(want.kind))
            assert (got.start_ns, got.end_ns) == (want.start_ns, want.end_ns)
            assert (got.status_code, got.status_message) == (Status.StatusCode.Value(want.status_code),
                                                             want.status_message)  # fmt: skip
            assert got.attributes == expected_attributes(want.attributes, policy)
            assert all(
                type(value) is str for value in got.attributes.values()
            )  # ClickHouse Map(String, String)
            assert got.events == tuple(
                (e.name, e.time_ns, expected_attributes(e.attributes, policy)) for e in want.events
            )
            assert got.links == tuple(
                (link.trace_id, link.span_id, "", expected_attributes(link.attributes, policy))
                for link in want.links
            )
            assert got.resource == want.resource
            assert got.scope == want.scope
    assert hidden_parents > 0, "some spans point at parents /trace left out, and keep pointing there"
    names = {span.name for span in received}
    assert {"agent_step", "time_to_first_token", "LettaAgentV3._execute_tool", "invoke_agent"} <= names
    assert any(span.links for span in received) and any(span.events for span in received)

    # Runs Letta has no trace for get a synthesised one, under the ID derived from the run.
    roots = roots_by_run(received)
    for truth_run in untraced:
        root = roots[truth_run.id]
        assert root.trace_id == f"{derived_id(16, 'trace', truth_run.id):032x}"
        children = [s for s in received if s.parent_span_id == root.span_id]
        assert len(children) == truth_run.num_steps

    if protocol != "grpc":
        assert set(receiver.content_types) == {"application/x-protobuf"}
        keys = {key for span in received for key in span.attributes}
        assert not [k for k in keys if k.startswith("http.request.body.")]
        assert [k for k in keys if k.startswith("parameter.")] == ["parameter.tool_name"]


def test_batches_leave_on_the_schedule_delay_without_a_flush(sim_factory, otel, receivers, exporters) -> None:
    receiver = receivers("grpc")
    otel(receiver, OTEL_BSP_SCHEDULE_DELAY="50")
    sim = sim_factory()

    async def scenario() -> Exporter:
        exporter = exporters(sim)
        await exporter.poller.tick()
        for wave in (1, 2, 3):  # an idle worker must wake for each new run, not only for full batches
            sim.burst(2)
            await settle(exporter, sim, expected=2 * wave)
            expected = synthesised_span_count(sim.truth())
            await asyncio.to_thread(receiver.wait_for_spans, expected, 5.0)
        return exporter

    exporter = run(scenario())
    assert span_results(exporter)["success"] == synthesised_span_count(sim.truth())


# -- no trace storage: 501 --------------------------------------------------------------------------


class StepClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_501_one_probe_then_synthesis_then_probes_again(
    sim_factory, otel, receivers, exporters, caplog
) -> None:
    receiver = receivers("grpc")
    otel(receiver)
    sim = sim_factory()  # trace_mode "501", the self-hosted default
    clock = StepClock()

    async def burst_and_settle(exporter: Exporter, count: int, expected: int) -> None:
        sim.burst(count)
        await settle(exporter, sim, expected=expected)

    async def scenario() -> Exporter:
        exporter = exporters(sim, concurrency=1, trace_probe_interval=600)
        exporter.enricher.availability.clock = clock
        await exporter.poller.tick()
        await burst_and_settle(exporter, 6, 6)
        assert trace_requests(sim) == 1, "one probe, then no per-run reads"
        clock.now += 599
        await burst_and_settle(exporter, 4, 10)
        assert trace_requests(sim) == 1
        clock.now += 2  # the probe interval has passed
        await burst_and_settle(exporter, 3, 13)
        assert trace_requests(sim) == 2, "exactly one more probe"
        # Trace storage appears (ClickHouse configured): the next probe finds it, reads resume.
        sim.config.trace_mode = "rows"
        clock.now += 601
        await burst_and_settle(exporter, 5, 18)
        assert trace_requests(sim) >= 2 + 5
        await flush(exporter)
        return exporter

    with caplog.at_level(logging.INFO, logger="exporter.letta.availability"):
        exporter = run(scenario())
    warnings = [r for r in caplog.records if "not serve retrieve_trace_for_run (501" in r.getMessage()]
    assert len(warnings) == 1, "said once, not per run or per probe"
    assert any("serves retrieve_trace_for_run again" in r.getMessage() for r in caplog.records)

    truth = sim.truth()
    roots = roots_by_run(receiver.spans())
    synthesised = [r for r in truth if r.id in roots]
    assert len(synthesised) >= 13  # every run of the 501 period
    for truth_run in synthesised:
        root = roots[truth_run.id]
        assert root.attributes["letta.synthetic"] is True
        step_trace = next((s.trace_id for s in truth_run.steps if s.trace_id), None)
        assert root.trace_id == (step_trace or f"{derived_id(16, 'trace', truth_run.id):032x}")
    assert_matches_truth(served_samples(exporter), truth)


def test_without_export_trace_is_read_only_for_ttft_and_501_costs_one_call(
    sim_factory, otel, exporters
) -> None:
    sim = sim_factory()  # 501; about 40% of runs have no ttft_ns
    exporter = counted(exporters, sim, 40)
    assert exporter.traces is None  # no endpoint: no export
    assert trace_requests(sim) == 1
    assert span_results(exporter) == {"success": 0, "failure": 0, "dropped": 0}  # there, at zero


def test_ttft_falls_back_to_the_trace(sim_factory, otel, exporters) -> None:
    sim = sim_factory(trace_mode="rows", ttft_in_trace_only=True)
    exporter = counted(exporters, sim, 40)
    truth = sim.truth()
    with_ttft = [r for r in truth if r.ttft_ns is not None and r.trace_spans]
    assert len(with_ttft) >= 5
    # Only runs missing ttft_ns whose steps name a trace cost a /trace read: here every traced run.
    assert trace_requests(sim) == len([r for r in truth if any(step.trace_id for step in r.steps)])
    samples = served_samples(exporter)
    observed = select(samples, "letta_run_ttft_seconds_count", ())
    assert observed == {(): len(with_ttft)}
    total = select(samples, "letta_run_ttft_seconds_sum", ())[()]
    assert total == pytest.approx(sum(r.ttft_ns for r in with_ttft) / 1e9, rel=1e-9)


def test_empty_traces_are_read_again_while_spans_may_still_be_landing(
    sim_factory, otel, receivers, exporters
) -> None:
    receiver = receivers("grpc")
    otel(receiver)
    sim = sim_factory(trace_mode="empty")
    exporter = counted(exporters, sim, 12)
    run(ticks(exporter, 4))
    run(flush(exporter))
    truth = sim.truth()
    named = [r for r in truth if any(s.trace_id for s in r.steps)]
    assert named and len(named) < len(truth)
    # [] although the steps name a trace: read again on each settle look, then synthesised.
    assert trace_requests(sim) == len(truth) + EnrichOptions().max_settle_checks * len(named)
    roots = roots_by_run(receiver.spans())
    assert roots.keys() == {r.id for r in truth}
    for truth_run in named:
        assert roots[truth_run.id].trace_id == truth_run.steps[0].trace_id
    assert span_results(exporter)["success"] == synthesised_span_count(truth)


# -- switches ---------------------------------------------------------------------------------------


def test_switches(sim_factory, otel, receivers, exporters) -> None:
    receiver = receivers("grpc")
    sim = sim_factory()
    assert exporters(sim).traces is None  # no endpoint configured
    otel(receiver)
    assert exporters(sim).traces is not None  # an endpoint turns it on
    assert exporters(sim, traces=False).traces is None  # ...unless switched off

    no_synthesis = counted(exporters, sim, 5, flush_after=True, trace_synthesis=False)
    assert receiver.spans() == []
    assert span_results(no_synthesis) == {"success": 0, "failure": 0, "dropped": 0}

    sim.config.trace_mode = "rows"
    before = trace_requests(sim)
    not_read = counted(exporters, sim, 5, flush_after=True, enrich_trace=False)
    assert trace_requests(sim) == before, "LETTA_EXPORTER_ENRICH_TRACE=false: no /trace calls"
    assert all(span.attributes.get("letta.synthetic") for span in receiver.spans())
    assert span_results(not_read)["success"] == len(receiver.spans()) > 0


def test_explicit_on_without_an_endpoint_uses_the_otlp_default(otel) -> None:
    settings = Settings(base_url="http://127.0.0.1:1", traces=True)
    exporter = build_exporter(settings)
    try:
        assert exporter.traces is not None
        assert exporter.traces.exporter._endpoint == "http://localhost:4318/v1/traces"  # type: ignore[attr-defined]
    finally:
        exporter.traces.shutdown(0.1)


def test_bad_otel_settings_stop_start_up_with_one_line(otel, monkeypatch) -> None:
    otel("http://127.0.0.1:4318", "http/json")
    with pytest.raises(ConfigError, match=r"LETTA_EXPORTER_TRACES.*OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        check_start_up(load_settings())
    # Tracing off: the OTel variables do not matter.
    check_start_up(load_settings({"traces": False, "base_url": "http://127.0.0.1:1"}))
    otel("http://127.0.0.1:4318", "grpc", OTEL_BSP_MAX_QUEUE_SIZE="lots")
    with pytest.raises(ConfigError, match="OTEL_BSP_MAX_QUEUE_SIZE"):
        check_start_up(load_settings())


# -- a collector that is down, slow or a black hole ----------------------------------------------


@pytest.mark.integration  # long real-time run: the full run's, to keep plain pytest quick
def test_collector_down_then_back(sim_factory, otel, receivers, exporters) -> None:
    receiver = receivers("grpc")
    port = receiver.port
    receiver.stop()  # the collector is down: connections refused
    otel(f"http://127.0.0.1:{port}", "grpc", OTEL_BSP_MAX_QUEUE_SIZE="30",
         OTEL_BSP_MAX_EXPORT_BATCH_SIZE="10", OTEL_EXPORTER_OTLP_TIMEOUT="1")  # fmt: skip
    sim = sim_factory()
    queued: list[int] = []

    async def scenario() -> tuple[Exporter, GrpcReceiver]:
        exporter = exporters(sim)
        assert exporter.traces is not None
        await exporter.poller.tick()
        sim.burst(40)
        assert await asyncio.to_thread(sim.wait_idle, 20)
        deadline = time.monotonic() + 20
        while runs_counted(served_samples(exporter)) < 40 and time.monotonic() < deadline:
            started = time.monotonic()
            await exporter.poller.tick()
            assert time.monotonic() - started < 2.0, "a poll never waits on the collector"
            queued.append(exporter.traces.queued)
        # Polling and metrics carried on while nothing could be exported.
        assert_matches_truth(served_samples(exporter), sim.truth())
        await asyncio.to_thread(exporter.traces.flush, 15)
        down = span_results(exporter)
        assert down["success"] == 0 and down["failure"] > 0 and down["dropped"] > 0
        assert sum(down.values()) == synthesised_span_count(sim.truth())

        back = receivers("grpc", port)  # the collector returns on the same address
        # The exporter's gRPC channel may still be backing off from the outage for a batch or two;
        # within a few waves export must be back.
        for wave in range(1, 11):
            sim.burst(3)
            await settle(exporter, sim, expected=40 + 3 * wave)
            await flush(exporter)
            if back.spans():
                break
        sim.burst(4)
        await settle(exporter, sim, expected=40 + 3 * wave + 4)
        await flush(exporter)
        return exporter, back

    exporter, back = run(scenario())
    assert queued and max(queued) <= 30, "the queue stays bounded"
    last_wave = sim.truth()[-4:]
    assert {r.id for r in last_wave} <= roots_by_run(back.spans()).keys()
    results = span_results(exporter)
    assert results["success"] == len(back.spans()) >= synthesised_span_count(last_wave)
    assert sum(results.values()) == synthesised_span_count(sim.truth())


def test_slow_collector_times_out_then_recovers(sim_factory, otel, receivers, exporters) -> None:
    receiver = receivers("http")
    receiver.delay = 1.5
    otel(receiver, "http/protobuf", OTEL_EXPORTER_OTLP_TIMEOUT="0.5")
    sim = sim_factory()

    async def scenario() -> Exporter:
        exporter = exporters(sim)
        await exporter.poller.tick()
        sim.burst(3)
        started = time.monotonic()
        await settle(exporter, sim)
        assert time.monotonic() - started < 5
        await asyncio.to_thread(exporter.traces.flush, 10)
        assert span_results(exporter)["failure"] == synthesised_span_count(sim.truth())
        receiver.delay = 0.0
        sim.burst(3)
        await settle(exporter, sim, expected=6)
        await flush(exporter)
        return exporter

    exporter = run(scenario())
    results = span_results(exporter)
    assert results["success"] == synthesised_span_count(sim.truth()[-3:]) > 0
    assert sum(results.values()) == synthesised_span_count(sim.truth())


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_shutdown_is_bounded_and_counts_what_was_left(sim_factory, otel, exporters) -> None:
    sim = sim_factory()
    with black_hole() as port:
        otel(f"http://127.0.0.1:{port}", "http/protobuf", OTEL_EXPORTER_OTLP_TIMEOUT="30",
             OTEL_BSP_MAX_EXPORT_BATCH_SIZE="5")  # fmt: skip
        exporter = counted(exporters, sim, 10)
        assert exporter.traces is not None
        started = time.monotonic()
        exporter.traces.shutdown(0.5)
        assert time.monotonic() - started < 1.5
        results = span_results(exporter)
        assert results["dropped"] > 0  # still queued behind the hanging batch
        # The hanging batch itself ends as a failure once its connection is given up.
        in_flight = synthesised_span_count(sim.truth()) - results["dropped"]
        assert 0 < in_flight <= 5


class Gate(SpanExporter):
    """Holds each batch until opened; its shutdown opens it."""

    def __init__(self) -> None:
        self.open, self.got = threading.Event(), []

    def export(self, batch):
        self.open.wait()
        self.got.extend(batch)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.open.set()


def test_a_full_queue_refuses_whole_runs_and_every_span_is_counted_once() -> None:
    """What the pipeline adds to the SDK's BatchSpanProcessor (1.45.2), which alone evicts the oldest
    queued spans uncounted, waits 30 s at shutdown for a hanging batch and abandons the rest uncounted."""
    counter = Counter("spans", "", ["result"], registry=CollectorRegistry())
    gate = Gate()
    pipeline = TracePipeline(gate, counter, max_queue=10, max_batch=4, delay=60)
    sampled = TraceFlags(TraceFlags.SAMPLED)
    runs = [[ReadableSpan(f"{r}.{i}", SpanContext(r + 1, i + 1, False, sampled)) for i in range(4)]
            for r in range(5)]  # fmt: skip
    assert pipeline.enqueue(runs[0])
    wait_for(lambda: pipeline.queued == 0, 5, what="the first run held in export")
    assert [pipeline.enqueue(spans) for spans in runs[1:]] == [True, True, False, False]
    assert pipeline.queued == 8  # two whole runs; the third would not fit whole
    started = time.monotonic()
    pipeline.shutdown(0.2)  # the held batch is let go by the exporter's shutdown
    assert time.monotonic() - started < 1.0

    def results() -> dict[str, float]:
        return {
            s.labels["result"]: s.value for s in counter.collect()[0].samples if s.name.endswith("_total")
        }

    wait_for(lambda: results() == {"success": 4, "dropped": 16}, 5, what="every span counted once")
    assert sorted(span.name for span in gate.got) == ["0.0", "0.1", "0.2", "0.3"]


@pytest.mark.integration  # long real-time run: the full run's, to keep plain pytest quick
def test_sigterm_with_a_hanging_collector_still_stops_within_five_seconds(sim_factory, tmp_path) -> None:
    sim = sim_factory(trace_mode="rows")
    with black_hole() as port:
        exporter = ExporterProcess(
            tmp_path,
            ["--poll-interval", "0.2", "--max-requests-per-second", "0"],
            env={
                "LETTA_BASE_URL": sim.base_url,
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
                "OTEL_BSP_SCHEDULE_DELAY": "50",
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4",
            },
        ).start()
        try:
            sim.burst(20)
            assert sim.wait_idle(20)
            wait_for(lambda: runs_counted(exporter.scrape()) >= 20, timeout=20, what="runs counted")
            assert exporter.proc is not None
            started = time.monotonic()
            exporter.proc.send_signal(signal.SIGTERM)
            assert exporter.proc.wait(timeout=10) == 0
            assert time.monotonic() - started < 5.0
            assert "still queued at shutdown" in exporter.logs()
        finally:
            exporter.stop()


# -- restarts ---------------------------------------------------------------------------------------


def test_a_restart_does_not_resend(sim_factory, otel, receivers, exporters, tmp_path) -> None:
    receiver = receivers("grpc")
    otel(receiver)
    sim = sim_factory(trace_mode="rows")
    state = tmp_path / "state.json"

    async def restart() -> Exporter:
        exporter = exporters(sim, state_file=state)
        await ticks(exporter, 3)
        await flush(exporter)
        return exporter

    counted(exporters, sim, 10, flush_after=True, state_file=state)
    sent = len(receiver.spans())
    assert sent > 10
    restarted = run(restart())
    assert len(receiver.spans()) == sent
    assert span_results(restarted)["success"] == 0
