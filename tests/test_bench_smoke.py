"""The benchmark harness still works: a seconds-long ``python -m bench --smoke`` run writes JSON with
every figure. Not a timed test: no threshold on any figure (see docs/bench.md for the real run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Pure, but tens of seconds long: part of the integration tier (scripts/test.sh), not of plain pytest.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent

CAPACITY_FIGURES = ("runs", "runs_per_second", "cpu_seconds_per_1000_runs", "requests_per_run", "peak_rss_mb")
LOAD_FIGURES = (
    "finalised_per_second",
    "completed_per_second",
    "cpu_seconds_per_1000_runs",
    "requests_per_run",
    "requests_per_run_beyond_lists",
    "lag_seconds",
    "rss_mb",
)


def test_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [json_path] = tmp_path.glob("*-smoke.json")
    assert json_path.with_suffix(".md").read_text().startswith("# letta-exporter benchmark")
    results = json.loads(json_path.read_text())

    assert results["failures"] == []
    assert {"nproc", "cpu_model", "ram_gb", "python"} <= results["machine"].keys()
    assert results["command"].endswith("-m bench --smoke --out " + str(tmp_path))
    assert results["date"] and results["tree"]["commit"]

    capacity = results["capacity"]
    for reader in ("exporter", "bare_httpx", "naive_sequential"):
        for figure in CAPACITY_FIGURES:
            assert capacity[reader][figure] is not None, (reader, figure)
        assert capacity[reader]["runs"] > 0, reader
    assert capacity["exporter"]["requests_per_run"]["list_steps_for_run"] > 0
    assert capacity["exporter_vs_ceiling"] > 0

    assert results["load"], "no load level ran"
    for level in results["load"]:
        for reader in ("exporter", "bare_httpx"):
            row = level[reader]
            for figure in LOAD_FIGURES:
                assert row[figure] is not None, (level["config"], reader, figure)
            assert row["lag_seconds"]["n"] > 0
            assert row["rss_mb"]["series"]
        assert level["exporter"]["requests_per_run"].get("retrieve_metrics_for_run", 0) > 0

    memory = results["memory"]
    assert "skips HTTP" in memory["note"]
    assert memory["baseline_rss_mb"] > 0 and memory["peak_rss_mb"] >= memory["baseline_rss_mb"]
    assert len(memory["samples"]) >= 2 and all(sample["rss_mb"] for sample in memory["samples"])

    [scrape] = results["scrape"]
    assert scrape["series"] >= 1000
    assert scrape["generate_latest_ms"]["median"] > 0
    for variant in ("text_identity", "prometheus_default"):
        assert scrape["http"][variant]["n"] > 0 and scrape["http"][variant]["p99"] > 0

    bombs = results["bombs"]
    assert bombs["idle"]["rss_mb"] > 0 and bombs["bombs"]["peak_rss_mb"] > 0 and bombs["end"]["rss_mb"] > 0
    assert bombs["bombs"]["requests_by_code"].get("body_too_large", 0) > 0, bombs["bombs"]
    assert bombs["end"]["recovered"] and bombs["end"]["runs_counted"] == bombs["end"]["runs_listed"]

    # Every target has its row: the backlog's two, each load level's, calls per run, memory, /metrics,
    # gzip bombs.
    names = [target["target"] for target in results["targets"]]
    for part in ("runs finalised/s >= 0.9x the bare-httpx ceiling", "peak RSS <= 120 MB",
                 "calls per run", "after 1M runs", "/metrics p99", "gzip bombs"):  # fmt: skip
        assert sum(part in name for name in names) == 1, (part, names)
    for level in results["load"]:
        assert any(name.startswith(f"{level['config']['rate']:g} runs/s over") for name in names), names
    assert all(set(target) == {"target", "measured", "met"} for target in results["targets"])


def test_request_path_bench_measures_every_variant() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.request_path", "--requests", "40"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "variant" not in line]
    names = [row.split("|")[1].strip() for row in rows]
    expected = ["AsyncClient.get", "AsyncClient on asyncio", "transport, anyio", "transport, asyncio"]
    assert names[:5] == [*expected, "LettaClient._get_json"]
    assert all(float(row.split("|")[2]) > 0 for row in rows)
