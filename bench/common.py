"""Shared pieces: which exporter tree is measured, child processes, /proc readings, metric parsing."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


# -- the code under test -------------------------------------------------------------------------


@dataclass
class Tree:
    """Where ``exporter`` is imported from: the work tree, or a git revision extracted to a temp dir."""

    path: Path
    label: str  # "worktree" or the revision asked for
    commit: str
    dirty: list[str]  # files under exporter/ that differ from the commit (work tree only)
    extra_path: str | None = None  # put first on the path: an A/B experiment (e.g. with sniffio)
    _tmp: tempfile.TemporaryDirectory | None = None

    @classmethod
    def open(cls, ref: str, extra_path: str | None = None) -> Tree:
        commit = _git("rev-parse", "HEAD" if ref == "worktree" else f"{ref}^{{commit}}")
        if ref == "worktree":
            dirty = [line[3:] for line in _git("status", "--porcelain", "--", "exporter").splitlines()]
            return cls(ROOT, "worktree", commit, dirty, extra_path)
        tmp = tempfile.TemporaryDirectory(prefix="letta-bench-tree-")
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "exporter"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp.name], input=archive, check=True)
        return cls(Path(tmp.name), ref, commit, [], extra_path, tmp)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def env(self) -> dict[str, str]:
        """The environment for every child: this tree first on the path, no LETTA_*/OTEL_* settings
        inherited (trace export stays off, as the targets ask), no stray .env (children run in a
        scratch directory)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LETTA", "OTEL_"))}
        paths = [self.extra_path, str(self.path), str(ROOT)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
        return env


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


# -- child processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """One child process with its output in a log file; stopped by whoever started it."""

    def __init__(self, name: str, args: list[str], tree: Tree, workdir: Path) -> None:
        self.name = name
        self.args = args
        self.tree = tree
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=self.workdir, env=self.tree.env(), stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def require_alive(self) -> None:
        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            raise BenchError(f"{self.name} exited (code {code}); log tail:\n{self.log_tail()}")


class BenchError(RuntimeError):
    pass


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def start_simulator(
    tree: Tree,
    workdir: Path,
    *,
    rate: float,
    agents: int,
    seed: int,
    history: int = 0,
    history_age: float = 300,
    extra: tuple[str, ...] = (),
) -> tuple[Child, str]:
    port = free_port()
    args = python(
        "-m", "exporter.simulator", "--host", "127.0.0.1", "--port", str(port), "--rate", f"{rate:g}",
        "--agents", str(agents), "--seed", str(seed), "--retention", "600",
    )  # fmt: skip
    if history:
        args += ["--history", str(history), "--history-age", f"{history_age:g}"]
    args += extra
    sim = Child(f"simulator-{port}", args, tree, workdir).start()
    url = f"http://127.0.0.1:{port}"
    if not wait_until(lambda: sim.alive() and answers(url + "/v1/health"), timeout=60):
        sim.stop()
        raise BenchError(f"simulator did not answer: {' '.join(args)}\n{sim.log_tail()}")
    return sim, url


def simulator_has_flag(tree: Tree, workdir: Path, flag: str, module: str = "exporter.simulator") -> bool:
    """Whether this tree's simulator CLI (or ``module``'s) knows ``flag`` (older trees lack some)."""
    shown = subprocess.run(
        python("-m", module, "--help"),
        cwd=workdir,
        env=tree.env(),
        capture_output=True,
        text=True,
    )
    return flag in shown.stdout


# The exporter's two ways of reading a run's steps, as benchmarked beside each other: per run (one
# /steps and one /metrics call a run, as on Letta 0.16.8), and the steps stream with tool counts off
# (the API budget of issue 20: list pages shared by many runs). Older trees know only the first.
EXPORTER_MODES: dict[str, tuple[str, ...]] = {
    "exporter": ("--steps-source", "per_run"),
    "exporter_stream": ("--steps-source", "auto", "--no-enrich-metrics"),
}


def exporter_modes(tree: Tree, workdir: Path) -> dict[str, tuple[str, ...]]:
    """The modes this tree's exporter has (an older tree: per run, its only mode, without the flag)."""
    if simulator_has_flag(tree, workdir, "--steps-source", module="exporter"):
        return EXPORTER_MODES
    return {"exporter": ()}


def exporter_args(base_url: str, port: int, *extra: str) -> list[str]:
    return python(
        "-m", "exporter", "--base-url", base_url, "--listen-address", "127.0.0.1", "--port", str(port),
        "--max-requests-per-second", "0", *extra,
    )  # fmt: skip


def start_exporter(tree: Tree, workdir: Path, base_url: str, *extra: str) -> tuple[Child, str, float]:
    """Start ``python -m exporter``; returns it, its URL and the moment it first answered /healthz
    (its first poll starts right after the server does)."""
    port = free_port()
    exporter = Child(f"exporter-{port}", exporter_args(base_url, port, *extra), tree, workdir).start()
    url = f"http://127.0.0.1:{port}"
    if not wait_until(lambda: exporter.alive() and answers(url + "/healthz", 0.5), timeout=60, interval=0.02):
        exporter.stop()
        raise BenchError(f"exporter did not answer: {' '.join(exporter.args)}\n{exporter.log_tail()}")
    return exporter, url, time.time()


# -- /proc -----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status_kb(pid: int | str, key: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")


def system_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU of this process plus its children that have been waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def rss_mb(pid: int | str = "self") -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    return _status_kb(pid, "VmHWM") / 1024


@dataclass
class Monitor:
    """Background sampling: a metric sum scraped from the exporter every ``scrape_interval`` seconds,
    and the RSS of some processes every second. Bounded by ``max_seconds``.

    A scrape costs the exporter CPU; where it renders /metrics on each scrape that grows with its
    series (about 50 ms for ``letta_runs_total`` at 1,000 agents), and ten scrapes a second would
    then be half a core and distort what is measured. So the interval stretches to ``cost_factor``
    times the exporter's CPU per scrape (a moving average of its /proc CPU across each scrape, which
    also catches whatever else it did meanwhile: a conservative estimate); ``intervals`` records it."""

    scrape_url: str | None
    metric: str
    pids: dict[str, int]
    cost_pid: int | None = None
    scrape_interval: float = 0.1
    cost_factor: float = 20.0
    max_seconds: float = 600.0
    counts: list[tuple[float, float]] = field(default_factory=list)  # (unix time, metric sum)
    scrape_seconds: list[float] = field(default_factory=list)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    intervals: list[float] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-monitor", daemon=True)

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        next_rss = 0.0
        interval = self.scrape_interval
        cost = 0.0
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                if self.scrape_url is not None:
                    try:
                        cpu = cpu_seconds(self.cost_pid) if self.cost_pid else 0.0
                        value = scrape_family_sum(client, self.scrape_url, self.metric)
                        took = time.monotonic() - started
                        self.counts.append((time.time(), value))
                        self.scrape_seconds.append(took)
                        if self.cost_pid:
                            cost = 0.7 * cost + 0.3 * (cpu_seconds(self.cost_pid) - cpu)
                            interval = max(self.scrape_interval, self.cost_factor * cost)
                        self.intervals.append(interval)
                    except (httpx.HTTPError, OSError, zlib.error):
                        self.errors += 1
                if started >= next_rss:
                    next_rss = started + 1.0
                    for name, pid in self.pids.items():
                        with contextlib.suppress(OSError):
                            self.rss.setdefault(name, []).append((time.time(), rss_mb(pid)))
                self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def first_reaching(self, count: float) -> float | None:
        for moment, value in self.counts:
            if value >= count:
                return moment
        return None

    def value_at(self, moment: float) -> float:
        """The last scraped value at or before ``moment``."""
        value = 0.0
        for at, count in self.counts:
            if at > moment:
                break
            value = count
        return value


def scrape_family_sum(client: httpx.Client, url: str, name: str) -> float:
    """The sum of the samples of ``name``, read as cheaply as the exporter allows: it asks for that
    family alone (``name[]``, which prometheus_client's own handler honours) and for gzip (which an
    exporter that pre-renders /metrics serves as stored), and decompresses only as far as the end
    of the family."""
    with client.stream("GET", url, params={"name[]": name}, headers={"Accept-Encoding": "gzip"}) as response:
        response.raise_for_status()
        raw = b"".join(response.iter_raw())
        gzipped = "gzip" in response.headers.get("content-encoding", "")
    return family_sum(raw, name, gzipped)


def family_sum(raw: bytes, name: str, gzipped: bool) -> float:
    marker = b"\n" + name.encode()
    if gzipped:
        decompressor = zlib.decompressobj(wbits=31)
        data = bytearray()
        for offset in range(0, len(raw), 1 << 16):
            data += decompressor.decompress(raw[offset : offset + (1 << 16)])
            start = data.find(marker)
            if start >= 0 and data.find(b"\n#", start + 1) >= 0:
                break
        body = bytes(data)
    else:
        body = raw
    body = b"\n" + body
    start = body.find(marker)
    if start < 0:
        return 0.0
    end = body.find(b"\n#", start + 1)
    return metric_sum(body[start : end if end >= 0 else len(body)].decode(), name)


def scrape_cost(pid: int, url: str, metric: str, min_seconds: float = 1.0, max_scrapes: int = 200) -> float:
    """CPU seconds the exporter spends per scrape of ``metric`` (as Monitor scrapes it), measured with
    nothing else to do (stop the simulator first): its idle CPU rate, then a burst of scrapes."""
    time.sleep(1.0)
    cpu, began = cpu_seconds(pid), time.monotonic()
    time.sleep(1.0)
    idle_rate = (cpu_seconds(pid) - cpu) / (time.monotonic() - began)
    scrapes = 0
    with httpx.Client(timeout=10.0) as client:
        cpu, began = cpu_seconds(pid), time.monotonic()
        while scrapes < max_scrapes and (scrapes < 10 or time.monotonic() - began < min_seconds):
            scrape_family_sum(client, url, metric)
            scrapes += 1
        used = cpu_seconds(pid) - cpu - idle_rate * (time.monotonic() - began)
    return max(0.0, used / scrapes)


# -- Prometheus text ---------------------------------------------------------------------------

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of exactly ``name`` (a sample name such as ``letta_runs_total``)."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name) or len(line) <= len(name) or line[len(name)] not in "{ ":
            continue
        head, _, value = line.rpartition(" ")
        labels = dict(_LABEL.findall(head[head.find("{") :])) if "{" in head else {}
        out.append((labels, float(value)))
    return out


def metric_samples_many(text: str, names: list[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of each of ``names``, in one pass over the text."""
    wanted = set(names)
    out: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in names}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        cut = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
        name = line[:cut]
        if name not in wanted:
            continue
        head, _, value = line.rpartition(" ")
        labels = dict(_LABEL.findall(head[head.find("{") :])) if "{" in head else {}
        out[name].append((labels, float(value)))
    return out


def metric_sum(text: str, name: str) -> float:
    return sum(value for _, value in metric_samples(text, name))


def scrape(url: str, name: str) -> str:
    return httpx.get(url + "/metrics", params={"name[]": name}, timeout=10).text


# -- statistics and the machine ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def machine_info() -> dict[str, object]:
    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ram_gb = _meminfo_kb("MemTotal") / 1024 / 1024
    versions = {}
    for package in (
        "httpx",
        "httpcore",
        "anyio",
        "h11",
        "pydantic",
        "prometheus_client",
        "apscheduler",
        "sniffio",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model or platform.processor(),
        "ram_gb": round(ram_gb, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "packages": versions,
    }


def _meminfo_kb(key: str) -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")
