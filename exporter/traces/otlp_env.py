"""The OTLP side of the environment: whether trace export is on, and whether the standard
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*`` variables can work. Read at start-up, so that a bad
value stops it with one line naming the variable (config.py), before any span is built."""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.trace.export import SpanExporter

from exporter.traces.spans import AttributePolicy

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"  # the OTLP exporter specification's default
# OTEL_BSP_* as the SDK's BatchSpanProcessor reads them (the delay in milliseconds).
BSP_DEFAULTS = {"OTEL_BSP_MAX_QUEUE_SIZE": 2048, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
                "OTEL_BSP_SCHEDULE_DELAY": 5000}  # fmt: skip


def configured_endpoint(environ: Mapping[str, str] = os.environ) -> str | None:
    for name in ENDPOINT_VARS:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def tracing_enabled(setting: bool | None, environ: Mapping[str, str] = os.environ) -> bool:
    """The ``LETTA_EXPORTER_TRACES`` switch; unset means on exactly when an endpoint is configured."""
    return setting if setting is not None else configured_endpoint(environ) is not None


def otlp_protocol(environ: Mapping[str, str] = os.environ) -> str:
    for name in PROTOCOL_VARS:
        protocol = environ.get(name, "").strip().lower()
        if protocol:
            if protocol not in PROTOCOLS:
                raise ValueError(f"{name}={protocol!r} is not supported; use grpc or http/protobuf")
            return protocol
    return DEFAULT_PROTOCOL


def batch_settings(environ: Mapping[str, str] = os.environ) -> dict[str, float]:
    values: dict[str, int] = {}
    for name, default in BSP_DEFAULTS.items():
        raw = environ.get(name, "").strip()
        try:
            values[name] = int(raw) if raw else default
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
        if values[name] <= 0:
            raise ValueError(f"{name} must be positive")
    return {
        "max_queue": values["OTEL_BSP_MAX_QUEUE_SIZE"],
        "max_batch": min(values["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"], values["OTEL_BSP_MAX_QUEUE_SIZE"]),
        "delay": values["OTEL_BSP_SCHEDULE_DELAY"] / 1000.0,
    }


def check_environment(environ: Mapping[str, str] = os.environ) -> None:
    """Raise ``ValueError`` naming the variable when the OTel settings cannot work."""
    otlp_protocol(environ)
    batch_settings(environ)
    AttributePolicy.from_settings("", environ)


def make_span_exporter(environ: Mapping[str, str] = os.environ) -> SpanExporter:
    """The SDK's OTLP exporter for the configured protocol; it reads its own endpoint, headers,
    timeout, compression and TLS variables."""
    if otlp_protocol(environ) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()
