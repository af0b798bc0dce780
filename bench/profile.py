"""Where the exporter spends its CPU: py-spy samples it (100 Hz, only the thread holding the GIL)
during the measured window of the busiest load level, and the collapsed stacks are summed up by
component (the innermost frame that belongs to a known library), by poll phase, and by function."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HTTP_CLIENT = "HTTP client (httpx, httpcore, h11, anyio)"
# What a sample's innermost frame alone decides.
LEAF_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("<frozen importlib", "failed 'import sniffio' on every request (httpcore)"),
    ("_distutils_hack", "failed 'import sniffio' on every request (httpcore)"),
    ("json/", "json decode"),
    ("pydantic", "pydantic validation"),
)
# Otherwise the innermost frame of a known library decides, scanning outwards; generic frames
# (asyncio, contextlib, ...) count for the library that called them, and only on their own when no
# library frame is found.
LIBRARY_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("prometheus_client", "prometheus_client recording"),
    ("httpcore", HTTP_CLIENT),
    ("httpx", HTTP_CLIENT),
    ("h11", HTTP_CLIENT),
    ("anyio", HTTP_CLIENT),
    ("wsgiref", "/metrics HTTP server (wsgiref)"),
    ("socketserver", "/metrics HTTP server (wsgiref)"),
    ("apscheduler", "apscheduler"),
    ("logging", "logging"),
    ("exporter/", "exporter's own code (incl. the asyncio/stdlib calls it makes)"),
)
GENERIC_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("asyncio", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
)


def component(frames: list[tuple[str, str, str]]) -> str:
    leaf_file = frames[-1][1] if frames else ""
    if any(func.startswith(("generate_latest", "make_wsgi_app")) for func, _, _ in frames):
        return "prometheus_client exposition (/metrics)"
    for key, label in LEAF_COMPONENTS:
        if key in leaf_file:
            return label
    for _, file, _ in reversed(frames):
        for key, label in LIBRARY_COMPONENTS:
            if key in file:
                return label
    for key, label in GENERIC_COMPONENTS:
        if key in leaf_file:
            return label
    return "other"


PHASES: tuple[tuple[str, str], ...] = (
    ("prometheus_app", "serving /metrics"),
    ("discover (", "poll: discover (run list)"),
    ("track (", "poll: track (active list)"),
    ("_resolve_gone", "poll: track (active list)"),
    ("_record (", "poll: record (outcome + metrics)"),
    ("_enrich_one", "poll: enrich (/metrics + /steps)"),
    ("enrich (", "poll: enrich (/metrics + /steps)"),
    ("refresh_agent_names", "poll: agent names"),
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


class Profiler:
    """Starts py-spy on a pid for a while; ``summary()`` waits for it and reads its output."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.raw = workdir / "profile.collapsed.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

    def available(self) -> bool:
        return Path(self.pyspy).exists()

    def start(self, pid: int, seconds: float) -> None:
        self.log = (self.workdir / "py-spy.log").open("wb")
        self.proc = subprocess.Popen(
            [self.pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
             "--format", "raw", "--gil", "--output", str(self.raw)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def summary(self, top: int = 25) -> dict[str, Any]:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        if not self.raw.exists():
            return {"error": "py-spy wrote nothing", "log": (self.workdir / "py-spy.log").read_text()[-500:]}
        return summarise(self.raw.read_text(), top)


def _frames(stack: str) -> list[tuple[str, str, str]]:
    frames = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        if match:
            frames.append((match["func"], match["file"], match["line"] or ""))
        else:
            frames.append((frame, "", ""))
    return frames


def summarise(collapsed: str, top: int = 25) -> dict[str, Any]:
    components: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)
        func, file, _ = frames[-1]
        self_time[f"{func} ({file})"] += count
        for name in {f"{f} ({p})" for f, p, _ in frames}:
            inclusive[name] += count
        components[component(frames)] += count
        phase = next((label for key, label in PHASES if key in stack), "other (scheduler, event loop, idle)")
        phases[phase] += count

    def share(counter: Counter[str], limit: int | None = None) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(limit)] if total else []

    return {
        "samples": total,
        "by_component_percent": share(components),
        "by_phase_percent": share(phases),
        "self_percent_top": share(self_time, top),
        "inclusive_percent_top": share(inclusive, top),
    }
