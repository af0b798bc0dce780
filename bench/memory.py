"""Memory after many runs, in-process: synthetic finished runs fed through the exporter's real
tracker, outcome and metrics code, built as ``exporter.app.build_exporter`` builds them. This path
SKIPS HTTP: no client, no poller, no server; a million runs over HTTP would take too long.

Each simulated second (``--rate`` runs) goes as a poll tick does: the runs are validated into the
client's models and observed by the tracker (the watermark advances), each is enriched with its
validated /metrics and /steps bodies, its outcome computed and recorded, and it is finalised; then the
tracker prunes. RSS is read every ``--sample-every`` runs.

``python -m bench.memory --runs 1000000 --out FILE`` writes one JSON document.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

from bench.common import peak_rss_mb, rss_mb
from bench.synthetic import Synthetic, outcome_of
from exporter.app import build_exporter
from exporter.config import Settings
from exporter.letta.models import Run
from exporter.tracker import created_ts

NOTE = "in-process: synthetic runs through RunTracker + the figure table + ExporterMetrics.record; skips HTTP"


def feed(runs: int, agents: int, rate: int, sample_every: int) -> dict[str, Any]:
    exporter = build_exporter(Settings(base_url="http://127.0.0.1:9", agent_names=False))
    tracker, metrics = exporter.tracker, exporter.metrics
    synthetic = Synthetic(agents=agents)
    gc.collect()
    baseline = rss_mb()
    samples: list[dict[str, Any]] = [
        {"runs": 0, "rss_mb": round(baseline, 1), "finalised_ids": 0, "gc_objects": len(gc.get_objects())}
    ]
    created_us = int(time.time() * 1e6) - (runs // rate + 60) * 1_000_000
    step_us = 1_000_000 // rate
    fed = 0
    started = time.perf_counter()
    while fed < runs:
        batch: dict[str, tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = {}
        for _ in range(min(rate, runs - fed)):
            run_body, metrics_body, steps_body = synthetic.make(fed, created_us)
            created_us += step_us
            run = Run.model_validate(run_body)
            tracker.observe(run)
            created = created_ts(run)
            if created is not None:
                tracker.advance_watermark(created)
            batch[run.id] = (run_body, metrics_body, steps_body)
            fed += 1
            if fed % sample_every == 0:
                samples.append({"runs": fed, "rss_mb": None, "finalised_ids": None})
        for entry in list(tracker.pending.values()):
            metrics.record(outcome_of(*batch.pop(entry.run.id)))
            tracker.finalise(entry.run.id)
        tracker.prune()
        # Samples are taken at the end of the tick that crossed the mark, as a poll would leave it.
        for sample in samples:
            if sample["rss_mb"] is None:
                sample["rss_mb"] = round(rss_mb(), 1)
                sample["finalised_ids"] = len(tracker.finalised)
                # Flat object count with rising RSS means allocator fragmentation, not a leak.
                sample["gc_objects"] = len(gc.get_objects())
    seconds = time.perf_counter() - started
    half = next((s for s in samples if s["runs"] >= runs // 2), samples[-1])
    return {
        "note": NOTE,
        "runs": fed,
        "agents": agents,
        "simulated_rate": rate,
        "baseline_rss_mb": round(baseline, 1),
        "samples": samples,
        "final_rss_mb": samples[-1]["rss_mb"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "growth_second_half_mb": round(samples[-1]["rss_mb"] - half["rss_mb"], 1),
        "us_per_run": round(seconds / max(fed, 1) * 1e6, 1),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument(
        "--rate", type=int, default=1000, help="simulated runs per second (sets the dedupe window)"
    )
    parser.add_argument("--sample-every", type=int, default=100_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = feed(args.runs, args.agents, args.rate, args.sample_every)
    with open(args.out, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
