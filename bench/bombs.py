"""Memory under hostile replies (issue 20, item 4): the real exporter process (``python -m exporter``)
against ``tests/hostile_server.py``, first with valid replies, then with a gzip bomb (about 1 MB on the
wire, 1 GiB decoded) as every reply, then with valid replies again.

1. *valid* (``valid_seconds``): the server lists ``runs_per_second`` new finished runs each second;
   the exporter counts them. Its RSS at the end of this phase is the *idle* figure.
2. *bombs* (``bomb_seconds``): ``pending_runs`` new runs are listed by one valid walk of the run
   list (so the enrichment workers have reads in flight: the replies that decode at once), and from
   then on every reply is the bomb: run list, active list, ``/metrics``, ``/steps``, agents. The
   kernel's peak-RSS mark (VmHWM) is reset as the phase starts (``/proc/<pid>/clear_refs``), so the
   *peak* read at the end of the run is this phase's and the next's, and no sampling can miss it.
3. *recovery*: valid replies again and ``runs_per_second`` more runs for one second; the phase ends
   when the exporter has counted every run the server ever listed (each bombed run is recorded,
   enriched once the bombs stop or without the sources that kept failing), or after
   ``recovery_timeout``. Its RSS then is the *end* figure.

``python -m bench.bombs --bomb-seconds 60 --out FILE`` writes one JSON document; ``python -m bench
--sections bombs`` runs it as a section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BenchError,
    Tree,
    cpu_seconds,
    metric_samples_many,
    peak_rss_mb,
    rss_mb,
    start_exporter,
    wait_until,
)
from tests.hostile_server import HostileLetta, Reply, bomb_reply, gzip_bomb, run_json

TARGET_GROWTH_MB = 40.0


@dataclass(frozen=True)
class BombsConfig:
    valid_seconds: float = 8.0
    bomb_seconds: float = 60.0
    runs_per_second: int = 25
    pending_runs: int = 40
    bomb_mib: int = 1024  # decoded size of the bomb
    # Sent in writes of ``wire_piece`` bytes (0: at once) ``wire_delay`` seconds apart, as over a
    # slow link: read a little at a time (4 KiB is 4 MiB decoded), the bombs in flight decode side
    # by side, each growing while the others do, rather than one after the other in one go each.
    wire_piece: int = 4096
    wire_delay: float = 0.05
    recovery_timeout: float = 330.0  # the circuit breaker's longest pause, and then some
    poll_interval: float = 1.0


@dataclass
class _Phases:
    """What the server answers: the usual replies, or the bomb once ``bombing``, bar the one walk of
    the run list that shows the runs the workers then read."""

    bomb: Reply
    bombing: bool = False
    reveal: bool = False  # the next walk of the run list is answered as usual
    walk_started: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, path: str, query: dict[str, list[str]]) -> Reply | None:
        with self.lock:
            if not self.bombing:
                return None
            is_list = path.rstrip("/") == "/v1/runs" and query.get("active") != ["true"]
            if is_list and self.reveal:
                # A walk's first page, then its continuation. Only a walk that began after the
                # switch lists the new runs: the continuation of one under way as it came is not it.
                first_page = not (query.get("before") or query.get("after"))
                if first_page and self.walk_started:
                    self.reveal = False  # a second first page: that walk had no continuation
                else:
                    self.reveal = first_page or not self.walk_started
                    self.walk_started = self.walk_started or first_page
                    return None
            return self.bomb


def run(tree: Tree, workdir: Path, config: BombsConfig) -> dict[str, Any]:
    bomb = gzip_bomb(config.bomb_mib)
    phases = _Phases(bomb_reply(bomb, config.wire_piece, config.wire_delay))
    server = HostileLetta(overrides={"": phases.route}).start()
    exporter = None
    made = 0

    def add_runs(count: int) -> None:
        nonlocal made
        fresh = [run_json(f"run-{made + n:06d}") for n in range(count)]
        made += count
        server.runs = server.runs + fresh  # a new list: the server's threads may be reading the old one

    try:
        # --backfill: the runs listed before its first poll count too, so "every run listed" is the total.
        exporter, url, _ = start_exporter(tree, workdir, server.base_url, "--backfill", "1h",
                                          "--poll-interval", f"{config.poll_interval:g}")  # fmt: skip
        pid = exporter.pid
        began = time.monotonic()
        while time.monotonic() - began < config.valid_seconds:
            add_runs(config.runs_per_second)
            exporter.require_alive()
            time.sleep(1.0)
        if not wait_until(lambda: _counted(url) >= made, timeout=30, interval=0.2):
            raise BenchError(
                f"the exporter did not count the valid phase's {made} runs:\n{exporter.log_tail()}"
            )
        idle = {"rss_mb": round(rss_mb(pid), 1), "peak_rss_mb": round(peak_rss_mb(pid), 1)}
        before = _mark(url, pid)

        reset = _reset_peak(pid)
        add_runs(config.pending_runs)
        with phases.lock:
            phases.bombing, phases.reveal = True, True
        samples = _sample_rss(pid, config.bomb_seconds, exporter)
        with phases.lock:
            phases.bombing = False
        cpu_bombing = cpu_seconds(pid) - before["cpu"]

        stopped = time.monotonic()
        add_runs(config.runs_per_second)
        recovered = wait_until(lambda: _counted(url) >= made, timeout=config.recovery_timeout, interval=0.5)
        recovery_seconds = time.monotonic() - stopped
        after = _mark(url, pid)
        end_rss = round(rss_mb(pid), 1)
        # Since the reset: the bombs, those still in flight as they stopped, and the recovery.
        peak = round(peak_rss_mb(pid), 1)
        exporter.require_alive()
        log = exporter.log_tail(200_000)
    finally:
        if exporter is not None:
            exporter.stop()
        server.stop()

    # Counted from the marks before the bombs and after the recovery: /metrics is rendered once a
    # poll, so a scrape as the bombs stop may not show the last of them yet.
    def delta(key: str) -> dict[str, int]:
        counts = {name: int(value - before[key].get(name, 0)) for name, value in after[key].items()}
        return {name: count for name, count in sorted(counts.items()) if count}

    return {
        "config": asdict(config),
        "bomb_bytes": len(bomb),
        "command": " ".join(exporter.args[1:]),
        "idle": idle,
        "peak_reset": reset,
        "pending_runs_listed": phases.walk_started,
        "bombs": {
            "peak_rss_mb": peak,
            "growth_mb": round(peak - idle["rss_mb"], 1),
            "rss_mb_series": samples,
            "requests_by_code": delta("codes"),
            "requests_by_endpoint": delta("endpoints"),
            "malformed": int(after["malformed"] - before["malformed"]),
            "cpu_seconds": round(cpu_bombing, 1),
            "runs_given_up": int(after["given_up"] - before["given_up"]),
        },
        "end": {
            "rss_mb": end_rss,
            "recovered": recovered,
            "recovery_seconds": round(recovery_seconds, 1),
            "runs_listed": made,
            "runs_counted": int(after["runs"]),
        },
        "tracebacks": log.count("Traceback"),
    }


def _counted(url: str) -> float:
    text = httpx.get(url + "/metrics", params={"name[]": "letta_runs_total"}, timeout=10).text
    return sum(value for _, value in metric_samples_many(text, ["letta_runs_total"])["letta_runs_total"])


def _mark(url: str, pid: int) -> dict[str, Any]:
    names = [
        "letta_runs_total",
        "letta_exporter_api_requests_total",
        "letta_exporter_api_malformed_responses_total",
        "letta_exporter_enrichment_given_up_total",
    ]
    text = httpx.get(url + "/metrics", params=[("name[]", n) for n in names], timeout=10).text
    samples = metric_samples_many(text, names)
    codes: dict[str, float] = {}
    endpoints: dict[str, float] = {}
    for labels, value in samples["letta_exporter_api_requests_total"]:
        codes[labels["code"]] = codes.get(labels["code"], 0) + value
        endpoints[labels["endpoint"]] = endpoints.get(labels["endpoint"], 0) + value
    return {
        "runs": sum(v for _, v in samples["letta_runs_total"]),
        "codes": codes,
        "endpoints": endpoints,
        "malformed": sum(v for _, v in samples["letta_exporter_api_malformed_responses_total"]),
        "given_up": sum(v for _, v in samples["letta_exporter_enrichment_given_up_total"]),
        "cpu": cpu_seconds(pid),
    }


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux 4.0+); False if the kernel refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _sample_rss(pid: int, seconds: float, exporter: Any) -> list[tuple[float, float]]:
    """RSS every half second for ``seconds`` (for the shape: the peak is the kernel's mark)."""
    began = time.monotonic()
    samples = []
    while (elapsed := time.monotonic() - began) < seconds:
        exporter.require_alive()
        samples.append((round(elapsed, 1), round(rss_mb(pid), 1)))
        time.sleep(0.5)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bombs", description=__doc__.split("\n")[0])
    parser.add_argument("--bomb-seconds", type=float, default=60.0)
    parser.add_argument("--wire-piece", type=int, default=4096, help="bytes per write of the bomb (0: one)")
    parser.add_argument("--wire-delay", type=float, default=0.05, help="seconds between those writes")
    parser.add_argument("--tree", default="worktree", help="as python -m bench --tree")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here (default: print it)")
    args = parser.parse_args(argv)
    tree = Tree.open(args.tree)
    workdir = Path(tempfile.mkdtemp(prefix="letta-bench-bombs-"))
    try:
        result = run(
            tree,
            workdir,
            BombsConfig(
                bomb_seconds=args.bomb_seconds, wire_piece=args.wire_piece, wire_delay=args.wire_delay
            ),
        )
    finally:
        tree.close()
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
