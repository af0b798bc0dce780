"""Offered load: a simulator making ``rate`` runs per second over ``agents`` agents, read for a bounded
time by the exporter and, on a fresh simulator with the same seed, by the bare httpx poller
(``bench.clients live``, the same request pattern without the exporter's machinery).

Per reader: warm-up, then a measured window, then a drain (scraping goes on so late runs still get a
lag). In the window: runs finalised per second, CPU seconds per 1,000 runs (from /proc), Letta API
requests per finalised run by endpoint, RSS every second. Lag: the exporter is scraped every 100 ms
for the sum of ``letta_runs_total``; afterwards every run's ``completed_at`` is listed from the
simulator; the k-th completion's lag is the first time the count reached k minus its completion time.
``--backfill 1h`` makes the exporter count every run the fresh simulator ever made, so the k-th
completion and the k-th count refer to the same population.
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.capacity import log_problems, log_size
from bench.common import (
    Child,
    Monitor,
    Tree,
    cpu_seconds,
    exporter_modes,
    metric_samples_many,
    percentile,
    python,
    rounded,
    scrape_cost,
    start_exporter,
    start_simulator,
)


@dataclass(frozen=True)
class LoadConfig:
    rate: float
    agents: int
    warmup: float = 8.0
    window: float = 20.0
    drain: float = 8.0
    poll_interval: float = 1.0
    concurrency: int = 4
    page_size: int = 1000  # the exporter's default
    overlap: float = 60.0  # the exporter's default discovery overlap, mirrored by the bare poller
    seed: int = 11


def run(tree: Tree, workdir: Path, config: LoadConfig, profile: Any = None) -> dict[str, Any]:
    """Each of the exporter's modes (``EXPORTER_MODES``), then the bare loop, on fresh simulators; a
    profile measures the default mode alone."""
    result: dict[str, Any] = {"config": config.__dict__}
    modes = exporter_modes(tree, workdir)
    if profile is not None:
        result["exporter"] = _measure(tree, workdir, config, "exporter", profile, ())
        return result
    for reader, flags in modes.items():
        result[reader] = _measure(tree, workdir, config, reader, None, flags)
    result["bare_httpx"] = _measure(tree, workdir, config, "bare_httpx", None, ())
    return result


def _measure(
    tree: Tree, workdir: Path, config: LoadConfig, reader: str, profile: Any, flags: tuple[str, ...]
) -> dict[str, Any]:
    sim, sim_url = start_simulator(tree, workdir, rate=config.rate, agents=config.agents, seed=config.seed)
    client: Child | None = None
    monitor: Monitor | None = None
    exporter = reader.startswith("exporter")
    try:
        total = config.warmup + config.window + config.drain
        if exporter:
            extra = [
                "--backfill", "1h", "--poll-interval", f"{config.poll_interval:g}",
                "--concurrency", str(config.concurrency), "--page-size", str(config.page_size), *flags,
            ]  # fmt: skip
            client, exporter_url, started = start_exporter(tree, workdir, sim_url, *extra)
            pids = {"client": client.pid, "sim": sim.pid}
            monitor = Monitor(exporter_url + "/metrics", "letta_runs_total", pids, cost_pid=client.pid)
        else:
            out = workdir / f"live-{config.rate:g}.json"
            args = python(
                "-m", "bench.clients", "live", "--base-url", sim_url,
                "--concurrency", str(config.concurrency), "--page-size", str(config.page_size),
                "--poll-interval", f"{config.poll_interval:g}", "--overlap", f"{config.overlap:g}",
                "--duration", f"{total:g}", "--out", str(out),
            )  # fmt: skip
            client = Child(f"live-bare-{config.rate:g}", args, tree, workdir).start()
            started = time.time()
            exporter_url = None
            monitor = Monitor(None, "", {"client": client.pid, "sim": sim.pid})
        monitor.max_seconds = total + 30
        monitor.start()
        _sleep_until(started + config.warmup, client)
        mark_a = _mark(client, sim, exporter_url)
        if profile is not None:
            profile.start(client.pid, config.window)
        _sleep_until(started + config.warmup + config.window, client)
        mark_b = _mark(client, sim, exporter_url)
        _sleep_until(started + total, client)
        monitor.stop()
        end = mark_b["end"] = time.time()
        if exporter:
            completions = _completions(sim_url, end)
            log_end = log_size(client)
            sim.stop()  # nothing left to poll: the exporter idles while its scrape cost is measured
            assert exporter_url is not None
            mark_b["scrape_cost"] = scrape_cost(client.pid, exporter_url + "/metrics", "letta_runs_total")
            mark_b["log_end"] = log_end
            client.stop()
            finalised = None
        else:
            client.wait(timeout=60)
            finalised = json.loads(out.read_text())
            completions = _completions(sim_url, end)
    finally:
        if monitor is not None:
            monitor.stop()
        if client is not None:
            client.stop()
        sim.stop()
    return _figures(config, reader, client, monitor, mark_a, mark_b, completions, finalised)


def _sleep_until(moment: float, child: Child) -> None:
    while (left := moment - time.time()) > 0:
        child.require_alive()
        time.sleep(min(left, 0.2))


def _mark(client: Child, sim: Child, exporter_url: str | None) -> dict[str, Any]:
    mark: dict[str, Any] = {"t": time.time(), "cpu": cpu_seconds(client.pid), "sim_cpu": cpu_seconds(sim.pid)}
    if exporter_url is not None:
        names = ["letta_runs_total", "letta_exporter_api_requests_total", "letta_exporter_tracked_runs",
                 "letta_exporter_pending_enrichment_runs", "letta_exporter_enrichment_given_up_total",
                 "letta_exporter_poll_duration_seconds_sum", "letta_exporter_poll_duration_seconds_count",
                 "letta_exporter_poll_errors_total"]  # fmt: skip
        text = httpx.get(exporter_url + "/metrics", params=[("name[]", n) for n in names], timeout=30).text
        samples = metric_samples_many(text, names)
        for name in names[4:]:
            mark[name] = sum(v for _, v in samples[name])
        mark["runs"] = sum(v for _, v in samples["letta_runs_total"])
        requests: dict[str, float] = {}
        for labels, value in samples["letta_exporter_api_requests_total"]:
            requests[labels["endpoint"]] = requests.get(labels["endpoint"], 0) + value
        mark["requests"] = requests
        mark["non_200"] = {
            f"{labels['endpoint']}:{labels['code']}": value
            for labels, value in samples["letta_exporter_api_requests_total"]
            if labels.get("code") != "200" and value
        }
        mark["pending"] = sum(v for _, v in samples["letta_exporter_pending_enrichment_runs"])
    return mark


def _completions(sim_url: str, until: float) -> list[float]:
    """completed_at of every finished run the simulator lists, up to ``until``, sorted."""
    times: list[float] = []
    cursor = None
    with httpx.Client(base_url=sim_url, timeout=60) as client:
        for _ in range(10_000):  # bounded: 10M runs
            params: list[tuple[str, str | int]] = [("order", "desc"), ("limit", 1000)]
            if cursor:
                params.append(("after", cursor))  # the spec's cursor: the simulator's default
            page = client.get("/v1/runs/", params=params).json()
            for run in page:
                if run.get("completed_at") and run.get("status") in ("completed", "failed", "cancelled"):
                    done = datetime.fromisoformat(run["completed_at"]).replace(tzinfo=UTC).timestamp()
                    if done <= until:
                        times.append(done)
            if len(page) < 1000:
                break
            cursor = page[-1]["id"]
    times.sort()
    return times


def _lags(
    completions: list[float],
    count_times: list[float],
    count_values: list[float],
    lo: float,
    hi: float,
    end: float,
    midpoint: bool,
) -> tuple[list[float], int]:
    """Lag of each completion in [lo, hi]: the moment the count reached its rank, minus its time.

    With ``midpoint`` (a scraped count), that moment lies between the scrape before and the first
    scrape that saw the count reach the rank; the midpoint is taken (error at most half a scrape
    interval). A completion still uncounted when observation stopped (``end``) gets ``end`` minus its
    time: a lower bound; the second value says how many of those there are."""
    lags: list[float] = []
    censored = 0
    for rank, done in enumerate(completions, start=1):
        if done < lo or done > hi:
            continue
        index = bisect.bisect_left(count_values, rank)
        if index >= len(count_values):
            censored += 1
            lags.append(end - done)
            continue
        reached = count_times[index]
        if midpoint and index > 0:
            reached = max(done, (count_times[index - 1] + reached) / 2)
        lags.append(reached - done)
    return lags, censored


def _figures(
    config: LoadConfig,
    reader: str,
    client: Child | None,
    monitor: Monitor | None,
    a: dict[str, Any],
    b: dict[str, Any],
    completions: list[float],
    finalised: dict[str, Any] | None,
) -> dict[str, Any]:
    assert client is not None and monitor is not None
    window = b["t"] - a["t"]
    if finalised is None:
        runs = b["runs"] - a["runs"]
        requests = {k: v - a["requests"].get(k, 0) for k, v in b["requests"].items()}
        request_runs = runs
        count_times = [t for t, _ in monitor.counts]
        count_values = [v for _, v in monitor.counts]
        # The running maximum: a counter never goes down, a missed scrape must not make it look so.
        for i in range(1, len(count_values)):
            count_values[i] = max(count_values[i], count_values[i - 1])
        lag_resolution = rounded(percentile(monitor.intervals, 50), 3)
    else:
        done_at = sorted(finalised["finalised_at"])
        runs = sum(1 for t in done_at if a["t"] <= t <= b["t"])
        requests = {}
        for moment, endpoint in zip(finalised["request_times"], finalised["request_endpoints"], strict=True):
            if a["t"] <= moment <= b["t"]:
                requests[endpoint] = requests.get(endpoint, 0) + 1
        request_runs = runs
        count_times = done_at
        count_values = list(range(1, len(done_at) + 1))
        lag_resolution = 0.0
    lags, censored = _lags(
        completions, count_times, count_values, a["t"], b["t"], b["end"], finalised is None
    )
    completed_in_window = sum(1 for t in completions if a["t"] <= t <= b["t"])
    cpu = raw_cpu = b["cpu"] - a["cpu"]
    if finalised is None:
        # The 100 ms scrapes that measure lag are the benchmark's load, not the exporter's: take them out.
        scrapes = sum(1 for t, _ in monitor.counts if a["t"] <= t <= b["t"])
        cpu = max(0.0, raw_cpu - scrapes * b["scrape_cost"])
    sim_cpu = b["sim_cpu"] - a["sim_cpu"]
    rss = monitor.rss.get("client", [])
    per_run = {k: rounded(v / request_runs) for k, v in sorted(requests.items())} if request_runs else {}
    figures: dict[str, Any] = {
        "window_seconds": rounded(window),
        "completed_per_second": rounded(completed_in_window / window, 1),
        "finalised_per_second": rounded(runs / window, 1),
        "cpu_seconds_per_1000_runs": rounded(cpu / runs * 1000) if runs else None,
        "cpu_share": rounded(cpu / window),
        "cpu_seconds_per_1000_runs_raw": rounded(raw_cpu / runs * 1000) if runs else None,
        "simulator_cpu_share": rounded(sim_cpu / window),
        "requests_per_run": per_run,
        "requests_per_run_beyond_lists": rounded(
            sum(v for k, v in per_run.items() if k != "list_runs") or 0.0
        ),
        "requests_per_run_all": rounded(sum(per_run.values()) or 0.0),
        "lag_seconds": {
            "median": rounded(percentile(lags, 50)),
            "p99": rounded(percentile(lags, 99)),
            "max": rounded(max(lags)) if lags else None,
            "min": rounded(min(lags)) if lags else None,
            "n": len(lags),
            "not_counted_by_end": censored,
            "lower_bound": censored > 0,
            "resolution_seconds": lag_resolution,
        },
        "rss_mb": {
            "start": rss[0][1] if rss else None,
            "max": max(v for _, v in rss) if rss else None,
            "end": rss[-1][1] if rss else None,
            "series": [[round(t - rss[0][0], 1), round(v, 1)] for t, v in rss] if rss else [],
        },
        "command": " ".join(client.args[1:]),
    }
    if finalised is None:
        figures["non_200_responses"] = {k: v - a["non_200"].get(k, 0) for k, v in b["non_200"].items()}
        figures["pending_enrichment_at_window_end"] = b["pending"]
        ticks = (
            b["letta_exporter_poll_duration_seconds_count"] - a["letta_exporter_poll_duration_seconds_count"]
        )
        tick_seconds = (
            b["letta_exporter_poll_duration_seconds_sum"] - a["letta_exporter_poll_duration_seconds_sum"]
        )
        figures["polls_in_window"] = ticks
        figures["poll_seconds_mean"] = rounded(tick_seconds / ticks) if ticks else None
        for name, key in (("letta_exporter_enrichment_given_up_total", "enrichment_given_up_in_window"),
                          ("letta_exporter_poll_errors_total", "poll_errors_in_window")):  # fmt: skip
            figures[key] = b[name] - a[name]
        figures["lag_scrape"] = {
            "count": len(monitor.scrape_seconds),
            "exporter_cpu_seconds_each": rounded(b["scrape_cost"], 5),
            "seconds_median": rounded(percentile(monitor.scrape_seconds, 50), 4),
            "interval_median": rounded(percentile(monitor.intervals, 50), 3),
            "interval_max": rounded(max(monitor.intervals), 3) if monitor.intervals else None,
        }
        figures["log_problems"] = log_problems(client, b["log_end"])
    else:
        figures["errors"] = finalised["errors"]
    return figures
