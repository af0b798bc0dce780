"""``python -m bench``: the whole benchmark, one section after the other; JSON + Markdown results.

Sections: capacity (a backlog drained by the exporter, a bare httpx loop and a naive poller), load
(offered 10/100/1,000 runs/s, exporter beside a bare httpx poller), memory (1M runs in-process),
scrape (/metrics at 10k and 100k series), bombs (the exporter's RSS under a minute of gzip bombs
against its idle RSS), and, with ``--profile``, a py-spy profile of the exporter at the busiest load
level. Every server binds 127.0.0.1 and is stopped by the section that started it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import bombs, capacity, load, report
from bench.common import (
    ROOT,
    BenchError,
    Child,
    Tree,
    machine_info,
    own_cpu_seconds,
    python,
    system_busy_seconds,
)
from bench.profile import Profiler
from bench.scrape import VARIANTS, time_scrapes

SECTIONS = ("capacity", "load", "memory", "scrape", "bombs")

# mode -> settings. "full" is the default run (about 13 minutes here), "quick" about three, "smoke"
# seconds (the test suite's check that the harness works; its figures mean nothing).
MODES: dict[str, dict[str, Any]] = {
    "full": {
        "capacity": capacity.CapacityConfig(runs=6_000, repeats=3),
        "levels": [(10, 10), (100, 500), (1000, 5000)],
        "load": {"warmup": 8.0, "window": 20.0, "drain": 8.0},
        "memory": {"runs": 1_000_000, "sample_every": 100_000},
        "scrape": [(10_000, 200, 50), (100_000, 30, 10)],  # (series, HTTP scrapes per variant, baseline)
        "bombs": bombs.BombsConfig(),
    },
    "quick": {
        "capacity": capacity.CapacityConfig(runs=2_000, repeats=1, max_seconds=20, stream_runs=10_000),
        "levels": [(10, 10), (1000, 5000)],
        "load": {"warmup": 3.0, "window": 5.0, "drain": 2.0},
        "memory": {"runs": 50_000, "sample_every": 10_000},
        "scrape": [(10_000, 20, 5), (100_000, 3, 2)],
        "bombs": bombs.BombsConfig(bomb_seconds=15),
    },
    "smoke": {
        "capacity": capacity.CapacityConfig(runs=100, agents=5, repeats=1, max_seconds=20, stream_runs=500),
        "levels": [(10, 5)],
        "load": {"warmup": 2.0, "window": 2.0, "drain": 1.0},
        "memory": {"runs": 4_000, "sample_every": 1_000},
        "scrape": [(1_000, 3, 2)],
        "bombs": bombs.BombsConfig(
            valid_seconds=2,
            bomb_seconds=2,
            runs_per_second=5,
            pending_runs=8,
            bomb_mib=64,
            recovery_timeout=60,
        ),
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="about three minutes: smaller backlog, short windows"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="seconds: checks the harness works, figures meaningless"
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile the exporter with py-spy (pip install py-spy)"
    )
    parser.add_argument(
        "--tree", default="worktree",
        help="the exporter code to measure: 'worktree' (default), or a git revision such as HEAD "
        "(extracted to a temp dir)",
    )  # fmt: skip
    parser.add_argument(
        "--levels",
        default=None,
        help="offered loads as rate:agents pairs, e.g. 10:10,1000:5000 (default: by mode)",
    )
    parser.add_argument(
        "--load-repeats", type=int, default=1,
        help="measure each offered load this many times (exporter and bare loop in pairs, on fresh "
        "simulators); the targets take the median of the paired ratios",
    )  # fmt: skip
    parser.add_argument("--memory-runs", type=int, default=None, help="runs fed in the memory section")
    parser.add_argument(
        "--profile-level", default=None, help="rate:agents to profile at (default: the busiest level)"
    )
    parser.add_argument(
        "--extra-path", default=None,
        help="a directory put first on the children's PYTHONPATH, for A/B runs (e.g. one holding sniffio)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="directory for the results"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the child processes' logs (printed path)"
    )
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the sections' finally blocks: children stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    settings = dict(MODES[mode])
    if args.memory_runs:
        settings["memory"] = {"runs": args.memory_runs, "sample_every": max(1, args.memory_runs // 10)}
    if args.levels:
        settings["levels"] = [tuple(float(x) for x in pair.split(":")) for pair in args.levels.split(",")]
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"error: unknown sections {sorted(unknown)}", file=sys.stderr)
        return 2
    started = time.time()
    interpreter = Path(sys.executable)
    shown = interpreter.relative_to(ROOT) if interpreter.is_relative_to(ROOT) else Path(interpreter.name)
    results: dict[str, Any] = {
        "schema": 1,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([str(shown), "-m", "bench", *argv]),
        "mode": mode,
        "machine": machine_info(),
        "failures": [],  # sections that could not run: the harness or the exporter broke
        "problems": [],  # what the figures or the exporter's logs show is wrong
    }
    tree = Tree.open(args.tree, args.extra_path)
    results["tree"] = {
        "label": tree.label,
        "commit": tree.commit,
        "dirty": tree.dirty,
        "extra_path": args.extra_path,
    }
    workdir = Path(tempfile.mkdtemp(prefix="letta-bench-"))
    try:
        if "capacity" in sections:
            _section("capacity", results, lambda: capacity.run(tree, workdir, settings["capacity"]))
        if "load" in sections:
            results["load"] = []
            for rate, agents in settings["levels"]:
                config = load.LoadConfig(rate=rate, agents=int(agents), **settings["load"])
                for repeat in range(args.load_repeats):
                    name = f"load {rate:g} runs/s" + (f" #{repeat + 1}" if args.load_repeats > 1 else "")
                    level = _section(name, results, lambda c=config: load.run(tree, workdir, c))
                    if level is not None:
                        results["load"].append(level)
            if args.profile:
                rate, agents = settings["levels"][-1]
                if args.profile_level:
                    rate, agents = (float(x) for x in args.profile_level.split(":"))
                config = load.LoadConfig(rate=rate, agents=int(agents), **settings["load"])
                results["profile"] = _section("profile", results, lambda: _profile(tree, workdir, config))
        if "memory" in sections:
            _section("memory", results, lambda: _memory(tree, workdir, **settings["memory"]))
        if "scrape" in sections:
            _section(
                "scrape", results, lambda: [_scrape(tree, workdir, *spec) for spec in settings["scrape"]]
            )
        if "bombs" in sections:
            _section("bombs", results, lambda: bombs.run(tree, workdir, settings["bombs"]))
        _collect_problems(results)
        results["targets"] = report.targets(results)
        results["duration_seconds"] = round(time.time() - started, 1)
        json_path, md_path = _write(results, args.out)
        print(report.markdown(results))
        print(f"wrote {json_path} and {md_path}")
    finally:
        tree.close()
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results["failures"] else 0


def _section(name: str, results: dict[str, Any], body: Any) -> Any:
    print(f"== {name}", flush=True)
    began = time.time()
    busy, own = system_busy_seconds(), own_cpu_seconds()
    try:
        value = body()
    except BenchError as exc:
        results["failures"].append(f"{name}: {exc}")
        print(f"   failed: {exc}", flush=True)
        return None
    elapsed = time.time() - began
    # Other work on the machine skews every figure: CPU that neither the bench nor its (reaped)
    # children used, in cores, says whether any ran meanwhile.
    foreign = (system_busy_seconds() - busy) - (own_cpu_seconds() - own)
    results.setdefault("foreign_cpu_cores", {})[name] = round(max(0.0, foreign) / elapsed, 2)
    print(f"   {elapsed:.0f} s (other processes used {max(0.0, foreign) / elapsed:.2f} cores)", flush=True)
    key = name.split()[0]
    if key in ("capacity", "memory", "scrape", "bombs"):
        results[key] = value
    return value


def _profile(tree: Tree, workdir: Path, config: load.LoadConfig) -> dict[str, Any]:
    profiler = Profiler(workdir)
    if not profiler.available():
        raise BenchError("py-spy is not installed (.venv/bin/pip install py-spy)")
    load.run(tree, workdir, replace(config), profile=profiler)
    summary = profiler.summary()
    if profiler.raw.exists():
        summary["_collapsed"] = profiler.raw.read_text()
    summary["level"] = f"{config.rate:g} runs/s, {config.agents} agents"
    summary["window_seconds"] = config.window
    return summary


def _memory(tree: Tree, workdir: Path, runs: int, sample_every: int) -> dict[str, Any]:
    out = workdir / "memory.json"
    args = python("-m", "bench.memory", "--runs", str(runs), "--agents", "5000", "--rate", "1000",
                  "--sample-every", str(sample_every), "--out", str(out))  # fmt: skip
    child = Child("memory", args, tree, workdir).start()
    try:
        code = child.wait(timeout=max(120, runs / 2000))
    finally:
        child.stop()
    if code != 0:
        raise BenchError(f"memory feed failed ({code}):\n{child.log_tail()}")
    result = json.loads(out.read_text())
    result["command"] = " ".join(args[1:])
    return result


def _scrape(tree: Tree, workdir: Path, series: int, scrapes: int, baseline: int) -> dict[str, Any]:
    args = python("-m", "bench.scrape", "serve", "--series", str(series), "--baseline-repeats", str(baseline))
    with (workdir / f"scrape-{series}.log").open("wb") as log:
        proc = subprocess.Popen(
            args, cwd=workdir, env=tree.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line:
            log = (workdir / f"scrape-{series}.log").read_text()[-1500:]
            raise BenchError(f"scrape server for {series} series exited: {log}")
        info = json.loads(line)
        url = f"http://127.0.0.1:{info['port']}/metrics"
        info["http"] = {
            name: time_scrapes(url, headers, scrapes, max_seconds=240) for name, headers in VARIANTS.items()
        }
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    del info["port"]
    return info


def _collect_problems(results: dict[str, Any]) -> None:
    """Exporter log lines worth a look, and levels where it did not keep up, said in one line each."""
    capacity_result = results.get("capacity") or {}
    exporter = capacity_result.get("exporter", {})
    if exporter and not exporter.get("complete"):
        results["problems"].append(
            f"capacity: the exporter counted {exporter['runs']} of {capacity_result['config']['runs']} runs "
            f"before the time limit"
        )
    for level in results.get("load", []):
        row = level.get("exporter", {})
        rate = level["config"]["rate"]
        if (
            row.get("completed_per_second")
            and row["finalised_per_second"] < 0.9 * row["completed_per_second"]
        ):
            results["problems"].append(
                f"load {rate:g} runs/s: the exporter finalised {row['finalised_per_second']} runs/s while "
                f"{row['completed_per_second']} ended per second (falling behind; "
                f"{row['lag_seconds']['not_counted_by_end']} runs of the window still uncounted at the end)"
            )
        problems = row.get("log_problems") or {}
        if problems.get("count"):
            results["problems"].append(
                f"load {rate:g} runs/s: {problems['count']} warning/error lines in the exporter log, first: "
                + " | ".join(problems["first"][:3])
            )


def _write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    machine = results["machine"]
    slug = re.sub(r"[^a-z0-9]+", "-", str(machine["cpu_model"]).lower()).strip("-")[:24] or "cpu"
    stem = f"{results['date'][:10]}-{machine['nproc']}cpu-{slug}-{results['tree']['commit'][:7]}"
    if results["mode"] != "full":
        stem += f"-{results['mode']}"
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    profile = results.get("profile") or {}
    collapsed = profile.pop("_collapsed", None)
    if collapsed is not None:
        # py-spy's collapsed stacks: re-summarise with bench.profile.summarise, or feed to a flame graph.
        stacks = out / f"{stem}.profile.collapsed.txt.gz"
        stacks.write_bytes(gzip.compress(collapsed.encode()))
        profile["collapsed_stacks_file"] = stacks.name
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path.write_text(report.markdown(results))
    return json_path, md_path
