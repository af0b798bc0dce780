"""End to end through a real OpenTelemetry collector: the exporter process, polling the simulator
with trace storage, sends over OTLP to ``rotel`` (PyPI ``rotel``: a collector binary, OTLP gRPC and
HTTP in, OTLP out), which forwards to an OTLP/gRPC receiver; trace, span and parent IDs arrive
intact. Then SIGTERM: the process flushes and exits within 5 s.

Integration tier: when the rotel binary is missing or does not run here, the tests fail."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.simulator import SimConfig, Simulator
from exporter.traces.synth import derived_id
from tests.otlp_receivers import GrpcReceiver, Rotel, rotel_binary
from tests.support import QUICK, ExporterProcess, wait_for

pytestmark = pytest.mark.integration


def require_rotel() -> Path:
    binary = rotel_binary()
    if binary is None:
        pytest.fail(
            "the rotel collector binary is not available or does not run here: 'pip install rotel' "
            "(wheels exist for Linux with glibc >= 2.34 on x86_64/arm64, and macOS)"
        )
    return binary


@contextlib.contextmanager
def chain(tmp_path: Path, config: SimConfig, protocol: str, **env: str) -> Iterator[Chain]:
    """Simulator → exporter process → rotel → receiver, all on loopback, all stopped afterwards."""
    binary = require_rotel()
    with contextlib.ExitStack() as started:  # whatever fails half-way, all that started is stopped
        receiver = GrpcReceiver()
        started.callback(receiver.stop)
        receiver.start()
        rotel = Rotel(binary, receiver.endpoint, tmp_path)
        started.callback(rotel.stop)
        rotel.start()
        sim = Simulator(config).start(host="127.0.0.1", port=0)
        started.callback(sim.stop)
        port = rotel.http_port if protocol == "http/protobuf" else rotel.grpc_port
        exporter = ExporterProcess(
            tmp_path,
            ["--poll-interval", "0.3", "--max-requests-per-second", "0", "--discovery-overlap", "5"],
            env={
                "LETTA_BASE_URL": sim.base_url,
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                **env,
            },
        )
        started.callback(exporter.stop)
        exporter.start()
        yield Chain(sim, exporter, rotel, receiver)


@dataclass
class Chain:
    sim: Simulator
    exporter: ExporterProcess
    rotel: Rotel
    receiver: GrpcReceiver


def sigterm_within_five_seconds(exporter: ExporterProcess) -> None:
    started = time.monotonic()
    assert exporter.proc is not None
    exporter.proc.send_signal(signal.SIGTERM)
    assert exporter.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_ids_survive_a_real_collector(protocol: str, tmp_path: Path) -> None:
    config = SimConfig(seed=7, agents=3, trace_mode="rows", **QUICK)
    with chain(tmp_path, config, protocol) as c:
        c.sim.burst(15)
        assert c.sim.wait_idle(20)
        truth = c.sim.truth()
        traced = [run for run in truth if run.trace_spans]
        assert traced and len(traced) < len(truth)
        expected = {
            (span.trace_id, span.span_id, span.parent_span_id) for run in traced for span in run.trace_spans
        }
        expected_total = len(expected) + sum(1 + run.num_steps for run in truth if not run.trace_spans)
        spans = c.receiver.wait_for_spans(expected_total, timeout=30)

        assert len(spans) == expected_total, "each span once"
        received = {(span.trace_id, span.span_id, span.parent_span_id) for span in spans}
        assert expected <= received
        roots = {span.attributes.get("letta.run.id"): span for span in spans if span.name == "invoke_agent"}
        for run in truth:
            if not run.trace_spans:
                assert roots[run.id].trace_id == f"{derived_id(16, 'trace', run.id):032x}"
        by_id = {(span.trace_id, span.span_id): span for span in spans}
        for run in traced:
            for want in run.trace_spans:
                got = by_id[(want.trace_id, want.span_id)]
                assert (got.name, got.start_ns, got.end_ns) == (want.name, want.start_ns, want.end_ns)
                assert got.resource["service.name"] == "letta-server"
        sigterm_within_five_seconds(c.exporter)


def test_exporter_keeps_polling_while_the_collector_is_gone(tmp_path: Path) -> None:
    """The collector dies mid-run: metrics keep counting, and SIGTERM still ends within 5 s."""
    config = SimConfig(seed=9, agents=2, **QUICK)
    with chain(tmp_path, config, "grpc", OTEL_EXPORTER_OTLP_TIMEOUT="1") as c:
        c.sim.burst(5)
        assert c.sim.wait_idle(20)
        c.receiver.wait_for_spans(5, timeout=20)
        c.rotel.stop()
        c.sim.burst(10)
        assert c.sim.wait_idle(20)

        def scraped(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
            samples = c.exporter.scrape().items()
            return sum(v for (n, have), v in samples if n == name and set(labels) <= set(have))

        wait_for(lambda: scraped("letta_runs_total") >= 15, timeout=20, what="runs counted, collector gone")
        failure = (("result", "failure"),)
        wait_for(lambda: scraped("letta_exporter_spans_exported_total", failure) > 0, timeout=20,
                 what="failed exports to be counted")  # fmt: skip
        sigterm_within_five_seconds(c.exporter)
