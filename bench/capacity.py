"""Throughput capacity: how fast a backlog of finished runs is read and finalised.

The simulator starts with ``runs`` finished runs (``--history``, spread over the last five minutes)
and no new ones. Three readers drain it, one after the other, against the same simulator:
the exporter with full enrichment (``--backfill 1h`` makes it count that history), a bare
``httpx.AsyncClient`` loop making the same requests at the same concurrency (the ceiling for a
Python client), and a naive sequential poller (the same requests one at a time).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Child,
    Monitor,
    Tree,
    cpu_seconds,
    exporter_modes,
    metric_samples,
    peak_rss_mb,
    python,
    rounded,
    scrape,
    scrape_cost,
    simulator_has_flag,
    start_exporter,
    start_simulator,
)


@dataclass(frozen=True)
class CapacityConfig:
    runs: int = 6_000
    agents: int = 100
    concurrency: int = 4
    page_size: int = 100
    poll_interval: float = 1.0
    max_seconds: float = 120.0  # per reader
    repeats: int = 3  # exporter and bare loop, paired, each pair on a fresh simulator
    seed: int = 7
    # The steps stream against the bare per-run loop, on a backlog of its own (0: not measured).
    stream_runs: int = 30_000


def run(tree: Tree, workdir: Path, config: CapacityConfig) -> dict[str, Any]:
    result: dict[str, Any] = {"config": config.__dict__}
    repeats: dict[str, list[dict[str, Any]]] = {"bare_httpx": [], "exporter": []}
    for _ in range(config.repeats):
        # The exporter goes last: its CPU correction needs the simulator stopped (see scrape_cost).
        for name, measured in _on_fresh_simulator(tree, workdir, config, ("bare_httpx", "exporter"), result):
            repeats[name].append(measured)
    for name, measured in _on_fresh_simulator(tree, workdir, config, ("naive_sequential",), result):
        result[name] = measured
    for name, rows in repeats.items():
        # The median repeat by runs/s stands for the reader; every repeat's runs/s is kept beside it.
        ordered = sorted(rows, key=lambda row: row["runs_per_second"] or 0)
        result[name] = {
            **ordered[len(ordered) // 2],
            "runs_per_second_repeats": [r["runs_per_second"] for r in rows],
        }
    ratios = [
        e["runs_per_second"] / b["runs_per_second"]
        for e, b in zip(repeats["exporter"], repeats["bare_httpx"], strict=True)
        if e["runs_per_second"] and b["runs_per_second"]
    ]
    if ratios:
        result["exporter_vs_ceiling"] = rounded(
            result["exporter"]["runs_per_second"] / result["bare_httpx"]["runs_per_second"]
        )
        result["exporter_vs_ceiling_paired_repeats"] = [rounded(r) for r in ratios]
    if config.stream_runs and "exporter_stream" in exporter_modes(tree, workdir):
        result["stream"] = _stream(tree, workdir, config)
    if simulator_has_flag(tree, workdir, "--trace-mode"):
        # The default configuration on a Letta that has trace storage: /trace is read for TTFT where a
        # run lacks one. Not a baseline comparison: it shows what that costs in calls and speed.
        traced = replace(config, runs=max(100, config.runs // 4))
        for _, measured in _on_fresh_simulator(
            tree, workdir, traced, ("exporter",), None, ("--trace-mode", "rows")
        ):
            result["exporter_letta_with_trace_storage"] = measured
    return result


def _stream(tree: Tree, workdir: Path, config: CapacityConfig) -> dict[str, Any]:
    """A backlog of ``stream_runs`` drained by the exporter reading steps from the stream (tool counts
    off), and by the bare per-run loop (``/metrics`` and ``/steps`` a run), one simulator."""
    backlog = replace(config, runs=config.stream_runs, max_seconds=max(config.max_seconds, 240.0))
    result: dict[str, Any] = dict(
        _on_fresh_simulator(tree, workdir, backlog, ("bare_httpx", "exporter_stream"), None)
    )
    exporter, bare = result["exporter_stream"], result["bare_httpx"]
    if exporter["runs_per_second"] and bare["runs_per_second"]:
        result["stream_vs_bare"] = rounded(exporter["runs_per_second"] / bare["runs_per_second"])
    result["runs"] = config.stream_runs
    return result


def _on_fresh_simulator(
    tree: Tree,
    workdir: Path,
    config: CapacityConfig,
    readers: tuple[str, ...],
    result: dict[str, Any] | None,
    extra: tuple[str, ...] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """Each reader in turn drains the same backlog on one simulator (reads do not change it)."""
    sim, url = start_simulator(
        tree, workdir, rate=0, agents=config.agents, seed=config.seed, history=config.runs, history_age=300,
        extra=extra,
    )  # fmt: skip
    if result is not None:
        result["simulator_command"] = " ".join(sim.args[1:])
    out = []
    try:
        for name in readers:
            sim_cpu = cpu_seconds(sim.pid)
            if name.startswith("exporter"):
                measured = _exporter(tree, workdir, url, config, sim, exporter_modes(tree, workdir)[name])
                sim_cpu = measured.pop("sim_cpu_at_end") - sim_cpu
            else:
                measured = _client(tree, workdir, url, config, name)
                sim.require_alive()
                sim_cpu = cpu_seconds(sim.pid) - sim_cpu
            measured["simulator_cpu_seconds"] = rounded(sim_cpu)
            if measured.get("seconds"):
                measured["simulator_cpu_share"] = rounded(sim_cpu / measured["seconds"])
            if extra:
                measured["simulator_command"] = " ".join(sim.args[1:])
            out.append((name, measured))
    finally:
        sim.stop()
    return out


def _client(tree: Tree, workdir: Path, url: str, config: CapacityConfig, name: str) -> dict[str, Any]:
    mode = "bare" if name == "bare_httpx" else "naive"
    out = workdir / f"capacity-{mode}.json"
    args = python(
        "-m", "bench.clients", "capacity", "--mode", mode, "--base-url", url,
        "--concurrency", str(config.concurrency), "--page-size", str(config.page_size),
        "--max-seconds", f"{config.max_seconds:g}", "--out", str(out),
    )  # fmt: skip
    client = Child(f"capacity-{mode}", args, tree, workdir).start()
    try:
        code = client.wait(timeout=config.max_seconds + 60)
    finally:
        client.stop()
    if code != 0:
        raise BenchError(f"{name} failed ({code}):\n{client.log_tail()}")
    data = json.loads(out.read_text())
    runs = data["runs"]
    return {
        "runs": runs,
        "seconds": rounded(data["seconds"]),
        "runs_per_second": rounded(data["runs_per_second"], 1),
        "cpu_seconds": rounded(data["cpu_seconds"]),
        "cpu_seconds_per_1000_runs": rounded(data["cpu_seconds"] / runs * 1000) if runs else None,
        "requests_per_run": {k: rounded(v / runs) for k, v in data["requests"].items()} if runs else {},
        "peak_rss_mb": rounded(data["peak_rss_mb"], 1),
        "complete": runs >= config.runs,
        "command": " ".join(args[1:]),
    }


def _exporter(
    tree: Tree, workdir: Path, url: str, config: CapacityConfig, sim: Child, flags: tuple[str, ...]
) -> dict[str, Any]:
    extra = [
        "--backfill", "1h", "--poll-interval", f"{config.poll_interval:g}",
        "--concurrency", str(config.concurrency), "--page-size", str(config.page_size), *flags,
    ]  # fmt: skip
    if config.runs > 10_000:  # the default pending bound would record the rest unenriched
        extra += ["--max-pending", str(config.runs)]
    exporter, exporter_url, up_at = start_exporter(tree, workdir, url, *extra)
    cpu_up = cpu_seconds(exporter.pid)
    pids = {"exporter": exporter.pid}
    monitor = Monitor(exporter_url + "/metrics", "letta_runs_total", pids, cost_pid=exporter.pid)
    monitor.max_seconds = config.max_seconds
    monitor.start()
    try:
        deadline = time.monotonic() + config.max_seconds
        while time.monotonic() < deadline:
            exporter.require_alive()
            if monitor.counts and monitor.counts[-1][1] >= config.runs:
                break
            time.sleep(0.02)
        cpu_done = cpu_seconds(exporter.pid)
        monitor.stop()
        sim_cpu_at_end = cpu_seconds(sim.pid)
        text = scrape(exporter_url, "letta_exporter_api_requests_total")
        peak = peak_rss_mb(exporter.pid)
        log_end = log_size(exporter)
        sim.stop()  # nothing left to poll: the exporter idles while its scrape cost is measured
        per_scrape = scrape_cost(exporter.pid, exporter_url + "/metrics", "letta_runs_total")
    finally:
        monitor.stop()
        exporter.stop()
    done_at = monitor.first_reaching(config.runs)
    counted = monitor.counts[-1][1] if monitor.counts else 0
    seconds = (done_at or time.time()) - up_at
    requests: dict[str, float] = {}
    for labels, value in metric_samples(text, "letta_exporter_api_requests_total"):
        requests[labels["endpoint"]] = requests.get(labels["endpoint"], 0) + value
    scrapes = len(monitor.counts)
    cpu = cpu_done - cpu_up - scrapes * per_scrape
    return {
        "runs": int(counted),
        "seconds": rounded(seconds),
        "runs_per_second": rounded(counted / seconds, 1) if seconds > 0 else None,
        "cpu_seconds": rounded(cpu),
        "cpu_seconds_per_1000_runs": rounded(cpu / counted * 1000) if counted else None,
        "measurement_scrapes": {
            "count": scrapes,
            "cpu_seconds_each": rounded(per_scrape, 5),
            "cpu_seconds_subtracted": rounded(scrapes * per_scrape),
        },
        "requests_per_run": {k: rounded(v / counted) for k, v in sorted(requests.items())} if counted else {},
        "peak_rss_mb": rounded(peak, 1),
        "complete": done_at is not None,
        "command": " ".join(exporter.args[1:]),
        "log_problems": log_problems(exporter, log_end),
        "sim_cpu_at_end": sim_cpu_at_end,
    }


def log_size(child: Child) -> int:
    try:
        return child.log_path.stat().st_size
    except OSError:
        return 0


# Said once at start-up against a Letta without trace storage (the simulator's default) or without
# the global steps list: expected.
BENIGN_LOG_LINES = ("Letta has no trace storage", "does not serve retrieve_trace_for_run (501",
                    "does not serve list_steps")  # fmt: skip


def log_problems(child: Child, upto: int | None = None, limit: int = 8) -> dict[str, Any]:
    """Warnings, errors and tracebacks in a child's log (its first ``upto`` bytes: what it logged
    while measured, not once the simulator was stopped): counted, the first few quoted."""
    try:
        with child.log_path.open("rb") as log:
            lines = log.read(upto).decode(errors="replace").splitlines()
    except OSError:
        return {}
    flagged = [
        line
        for line in lines
        if any(word in line for word in ("WARNING", "ERROR", "Traceback"))
        and not any(benign in line for benign in BENIGN_LOG_LINES)
    ]
    return {"count": len(flagged), "first": [line[:300] for line in flagged[:limit]]} if flagged else {}
