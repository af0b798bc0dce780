"""The OTLP side of the environment: whether trace export is on, and whether the standard
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*`` variables can work. Read at start-up, so that a bad
value stops it with one line naming the variable (config.py), before any span is built."""

from __future__ import annotations

import os

from opentelemetry.sdk.trace.export import SpanExporter

from exporter.defaults import OTEL_BSP
from exporter.traces.spans import AttributePolicy

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"  # the OTLP exporter specification's default


def configured_endpoint() -> str | None:
    for name in ENDPOINT_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def tracing_enabled(setting: bool | None) -> bool:
    """The ``LETTA_EXPORTER_TRACES`` switch; unset means on exactly when an endpoint is configured."""
    return setting if setting is not None else configured_endpoint() is not None


def otlp_protocol() -> str:
    for name in PROTOCOL_VARS:
        protocol = os.environ.get(name, "").strip().lower()
        if protocol:
            if protocol not in PROTOCOLS:
                raise ValueError(f"{name}={protocol!r} is not supported; use grpc or http/protobuf")
            return protocol
    return DEFAULT_PROTOCOL


def _bsp(name: str) -> int:
    # OTEL_BSP_* as the SDK's BatchSpanProcessor reads them; on a bad value it only logs.
    raw = os.environ.get(f"OTEL_BSP_{name}", "").strip()
    try:
        value = int(raw) if raw else OTEL_BSP[name]
    except ValueError:
        raise ValueError(f"OTEL_BSP_{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"OTEL_BSP_{name} must be positive")
    return value


def batch_settings() -> dict[str, float]:
    return {
        "max_queue": _bsp("MAX_QUEUE_SIZE"),
        "max_batch": _bsp("MAX_EXPORT_BATCH_SIZE"),
        "delay": _bsp("SCHEDULE_DELAY") / 1000.0,  # milliseconds in the variable
    }


def check_environment(setting: bool | None) -> None:
    """Raise ``ValueError`` naming the variable when trace export is on and the OTel settings cannot
    work (the command line checks this at start-up)."""
    if tracing_enabled(setting):
        otlp_protocol()
        batch_settings()
        AttributePolicy.from_settings("")


def make_span_exporter() -> SpanExporter:
    """The SDK's OTLP exporter for the configured protocol; it reads its own endpoint, headers,
    timeout, compression and TLS variables."""
    if otlp_protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()
