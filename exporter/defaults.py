"""Every default of the exporter's configuration, defined once: the settings' (exporter/config.py,
docs/configuration.md) and the OpenTelemetry variables' it reads. The classes the settings configure
default to the same names, so a test or a benchmark that builds one without settings gets what the
exporter runs with. Imports nothing: any module may read it (tests/test_layout.py)."""

from __future__ import annotations

LETTA_CLOUD_URL = "https://api.letta.com"
LISTEN_ADDRESS = "0.0.0.0"
PORT = 8284  # Letta itself uses 8283
POLL_INTERVAL = 10.0  # seconds
PAGE_SIZE = 1000  # Letta's largest page
CONCURRENCY = 4
REQUEST_TIMEOUT = 10.0  # seconds
MAX_RETRIES = 3
# Where the adaptive request rate may climb to: a self-hosted server is the team's own to load.
CLOUD_RATE_CEILING = 50.0
SELF_HOSTED_RATE_CEILING = 200.0
DISCOVERY_OVERLAP = 60.0  # seconds
ENRICH_USAGE = ENRICH_METRICS = ENRICH_STEPS = ENRICH_TRACE = True
STEPS_SOURCE = "auto"
TRACE_SYNTHESIS = True
TRACE_REPARENT_ORPHANS = False
TRACE_ATTRIBUTE_DENYLIST = "http.request.body.*,parameter.*,!parameter.tool_name"
TRACE_PROBE_INTERVAL = 600.0  # seconds
AGENT_LABEL = AGENT_NAMES = True
MAX_AGENTS = 1000
BACKFILL = 0.0  # seconds: none
MAX_PENDING = 2000
LOG_LEVEL = "info"
LOG_FORMAT = "text"
# vLLM's TTFT buckets (1 ms .. 2560 s); LLM first tokens range from tens of ms to minutes.
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
# OpenTelemetry GenAI's gen_ai.invoke_agent.duration doubling from 0.1 s, carried on to ~55 min so a
# long agent loop does not pin p95 at the top bucket.
DURATION_BUCKETS: tuple[float, ...] = tuple(round(0.1 * 2**k, 1) for k in range(16))

# OTEL_BSP_* when unset: the SDK's BatchSpanProcessor defaults, which the exporter's queue keeps.
OTEL_BSP = {"MAX_QUEUE_SIZE": 2048, "MAX_EXPORT_BATCH_SIZE": 512, "SCHEDULE_DELAY": 5000}  # spans; ms
