"""Real OTLP trace receivers for tests, in-process on loopback: an OTLP/gRPC ``TraceService`` server
and an OTLP/HTTP endpoint (``POST /v1/traces``, protobuf). Both keep every request they accept and
can be told to fail or to answer slowly; ``spans()`` flattens what arrived into plain records.

Also here: the ``rotel`` collector (PyPI ``rotel``, a real OpenTelemetry collector binary) as a
child process.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import subprocess
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support import free_port, wait_for

ExportRequest = trace_service_pb2.ExportTraceServiceRequest


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class Received:
    """One span as it arrived, IDs as lower-case hex ("" for none)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    dropped_attributes: int
    events: tuple[tuple[str, int, dict[str, Any]], ...]
    links: tuple[tuple[str, str, str, dict[str, Any]], ...]
    resource: dict[str, Any]
    scope: tuple[str, str]


def flatten(requests: list[ExportRequest]) -> list[Received]:
    spans = []
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                scope = (scope_spans.scope.name, scope_spans.scope.version)
                for span in scope_spans.spans:
                    spans.append(
                        Received(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            trace_state=span.trace_state,
                            name=span.name,
                            kind=span.kind,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            status_code=span.status.code,
                            status_message=span.status.message,
                            attributes=attributes(span.attributes),
                            dropped_attributes=span.dropped_attributes_count,
                            events=tuple(
                                (event.name, event.time_unix_nano, attributes(event.attributes))
                                for event in span.events
                            ),
                            links=tuple(
                                (
                                    link.trace_id.hex(),
                                    link.span_id.hex(),
                                    link.trace_state,
                                    attributes(link.attributes),
                                )
                                for link in span.links
                            ),
                            resource=resource,
                            scope=scope,
                        )
                    )
    return spans


class _Receiver:
    """What both receivers share: the requests kept, and the faults to play."""

    def __init__(self) -> None:
        self._requests: list[ExportRequest] = []
        self._lock = threading.Lock()
        self.delay = 0.0  # seconds to wait before answering
        self.failing = False  # answer "unavailable" (gRPC UNAVAILABLE, HTTP 503)
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keep(self, request: ExportRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[ExportRequest]:
        with self._lock:
            return list(self._requests)

    def spans(self) -> list[Received]:
        return flatten(self.requests)

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[Received]:
        wait_for(lambda: len(self.spans()) >= count, timeout=timeout, what=f"{count} spans to arrive")
        return self.spans()


class GrpcReceiver(_Receiver):
    """An OTLP/gRPC TraceService on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self._server: grpc.Server | None = None

    def start(self, port: int = 0) -> GrpcReceiver:
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: ExportRequest, context: grpc.ServicerContext) -> Any:
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.failing:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "collector overloaded")
                receiver.keep(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        server = grpc.server(ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None


class HttpReceiver(_Receiver):
    """An OTLP/HTTP endpoint on 127.0.0.1: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        super().__init__()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.content_types: list[str] = []

    def start(self, port: int = 0) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                if self.path != "/v1/traces":
                    return self._answer(404, b"")
                if receiver.failing:
                    return self._answer(503, b"")
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportRequest()
                request.ParseFromString(body)
                receiver.content_types.append(self.headers.get("content-type", ""))
                receiver.keep(request)
                self._answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- rotel ---------------------------------------------------------------------------------------


def rotel_binary() -> Path | None:
    """The collector binary the ``rotel`` wheel ships, when it is installed and runs here."""
    try:
        import rotel
    except ImportError:
        return None
    binary = Path(rotel.__file__).parent / "rotel-agent"
    if not binary.exists():
        return None
    try:
        subprocess.run([binary, "--version"], capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return binary


class Rotel:
    """``rotel-agent start`` in the foreground: OTLP in on gRPC and HTTP (loopback), OTLP/gRPC out to
    ``upstream``."""

    def __init__(self, binary: Path, upstream: str, tmp: Path) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log_path = tmp / "rotel.log"
        self.args = [
            str(binary), "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", upstream,
            "--otlp-exporter-protocol", "grpc",
            "--otlp-exporter-compression", "none",
            "--batch-timeout", "100ms",
            "--pid-file", str(tmp / "rotel.pid"),
            "--log-file", str(tmp / "rotel-agent.log"),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rotel:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=self._log)
        wait_for(lambda: self._listening(self.grpc_port) and self._listening(self.http_port), timeout=15,
                 what="rotel to listen")  # fmt: skip
        return self

    def _listening(self, port: int) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"rotel exited with {self.proc.returncode}: {self.logs()[-2000:]}")
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.proc = None
