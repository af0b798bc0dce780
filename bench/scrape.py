"""/metrics response time at a given number of series.

``python -m bench.scrape serve --series N``: build the exporter's registry as ``build_exporter`` does,
fill it with synthetic finished runs (``ExporterMetrics.record``) over as many agents as it takes to
reach N series, time prometheus_client's own ``generate_latest`` on it in-process (the baseline),
then serve it with the exporter's own ``exporter.server.HttpServer`` and print one JSON line (port,
series, baseline timings). It serves until its standard input closes. The parent times the scrapes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from statistics import median
from typing import Any

import httpx

from bench.common import percentile, rounded

# What Prometheus 2.5x/3.x sends by default: it prefers OpenMetrics, and asks for gzip.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
VARIANTS = {
    "text_identity": {"Accept": "text/plain", "Accept-Encoding": "identity"},
    "prometheus_default": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
}


def count_series(registry: Any) -> int:
    return sum(len(family.samples) for family in registry.collect())


def fill(series: int) -> tuple[Any, int, int, Any, Any]:
    """A registry as build_exporter builds it, filled until it exposes at least ``series`` series;
    also the exporter built (for its own /metrics rendering, where the tree has one) and a function
    recording ``n`` more runs spread over the agents (what a poll adds between renderings)."""
    from bench.synthetic import Synthetic, outcome_of
    from exporter.app import build_exporter
    from exporter.config import Settings

    # About 100 series per agent: 100k series need more agents than the default max_agents (1000).
    max_agents = max(1000, series // 50)
    settings = Settings(base_url="http://127.0.0.1:9", agent_names=False, max_agents=max_agents)
    exporter = build_exporter(settings)
    metrics = exporter.metrics
    registry = getattr(exporter, "registry", None)
    if registry is None:  # trees that render the run totals themselves: prometheus-client's reference
        from prometheus_client import CollectorRegistry

        from tests.support import TotalsCollector

        registry = CollectorRegistry()
        registry.register(metrics.registry)
        registry.register(TotalsCollector(metrics.totals))
    synthetic = Synthetic(agents=metrics.agents.max_agents)
    created_us = int((time.time() - 3600) * 1e6)
    index = 0

    def feed_agents(agents: range, runs_each: int = 8) -> None:
        nonlocal index
        for agent_index in agents:
            agent_id = synthetic.agent_ids[agent_index % len(synthetic.agent_ids)]
            for _ in range(runs_each):
                run_body, metrics_body, steps_body = synthetic.make(index, created_us + index)
                index += 1
                run_body["agent_id"] = agent_id
                metrics.record(outcome_of(run_body, metrics_body, steps_body))

    base = count_series(registry)
    probe = 20
    feed_agents(range(probe))
    per_agent = max(1.0, (count_series(registry) - base) / probe)
    agents = probe
    while (have := count_series(registry)) < series:
        more = max(1, int((series - have) / per_agent + 0.999))
        if agents + more > metrics.agents.max_agents:
            raise SystemExit(f"{series} series need more than max_agents={metrics.agents.max_agents} agents")
        feed_agents(range(agents, agents + more))
        agents += more

    def feed(runs: int) -> None:
        feed_agents(range(agents), runs_each=max(1, runs // agents))

    return registry, have, agents, exporter, feed


def serve(series: int, baseline_repeats: int) -> int:
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from exporter.server import HttpServer, make_app

    registry, have, agents, exporter, feed = fill(series)
    timings: list[float] = []
    output = b""
    for _ in range(baseline_repeats):
        started = time.perf_counter()
        output = generate_latest(registry)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    gzip.compress(output)
    gzip_seconds = time.perf_counter() - started
    started = time.perf_counter()
    openmetrics = generate_openmetrics(registry)
    openmetrics_seconds = time.perf_counter() - started
    render: dict[str, Any] | None = None
    try:
        from exporter.exposition import Exposition  # trees that render /metrics once per poll
    except ImportError:
        app = make_app(registry, lambda: True)
    else:
        # The tree's own rendering where it has one (run totals rendered incrementally), else one
        # of the full registry. Each rendering follows 1,000 more runs, a poll's worth at 1,000/s.
        exposition = (
            getattr(exporter, "exposition", None)
            or getattr(exporter.metrics, "exposition", None)
            or Exposition(registry)
        )
        exposition.refresh()
        renders = []
        for _ in range(max(3, baseline_repeats // 5)):
            feed(1000)
            started = time.perf_counter()
            exposition.refresh()
            renders.append(time.perf_counter() - started)
        render = _summary(renders)
        app = make_app(exposition, lambda: True)  # type: ignore[arg-type]
    server = HttpServer(app, "127.0.0.1", 0).start()
    print(
        json.dumps(
            {
                "port": server.port,
                "series": have,
                "agents": agents,
                "body_bytes": len(output),
                "openmetrics_body_bytes": len(openmetrics),
                "generate_latest_ms": _summary(timings),
                "gzip_once_ms": round(gzip_seconds * 1000, 2),
                "openmetrics_generate_once_ms": round(openmetrics_seconds * 1000, 2),
                # Where the tree renders once per poll: what each poll pays (text + gzip), in ms.
                "render_per_poll_ms": render,
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until the parent closes it
    server.stop()
    return 0


def _summary(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median": rounded(median(ms), 2) if ms else None,
        "p99": rounded(percentile(ms, 99), 2),
        "max": rounded(max(ms), 2) if ms else None,
    }


def time_scrapes(url: str, headers: dict[str, str], count: int, max_seconds: float) -> dict[str, Any]:
    """Sequential scrapes, each timed from request to the last byte of the body as sent (a gzip body is
    not decompressed: that is the scraper's cost, not the exporter's)."""
    timings: list[float] = []
    size = 0
    deadline = time.monotonic() + max_seconds
    with httpx.Client(timeout=30.0, headers=headers) as client:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            with client.stream("GET", url) as response:
                response.raise_for_status()
                size = sum(len(chunk) for chunk in response.iter_raw())
            timings.append(time.perf_counter() - started)
    return {**_summary(timings), "wire_bytes": size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("serve",))
    parser.add_argument("--series", type=int, required=True)
    parser.add_argument("--baseline-repeats", type=int, default=50)
    args = parser.parse_args(argv)
    return serve(args.series, args.baseline_repeats)


if __name__ == "__main__":
    raise SystemExit(main())
