"""letta-exporter: Prometheus metrics and OTLP traces for Letta agent runs."""

__version__ = "0.1.0"
