"""Shared test helpers: ground truth from the simulator in the exporter's vocabulary, metric reads,
free ports, a hand-stepped clock, the real tools the integration tier drives, and running the real
exporter process."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.app import Exporter, build_exporter
from exporter.config import Settings
from exporter.families import OUTCOME_FAMILIES
from exporter.labels import enum_label
from exporter.prometheus import ExporterMetrics
from exporter.totals import RunTotals

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# Short, tidy simulated runs: tests that want late visibility or write lag switch them on explicitly.
QUICK = dict(duration_range=(0.05, 0.3), late_visibility_fraction=0.0, write_lag_fraction=0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeClock:
    """A clock the test steps by hand: call it for the time, ``advance`` it (or set ``now``)."""

    def __init__(self, start: float = 1_800_000_000.123456) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def find_tool(name: str, env: str | None = None) -> Path | None:
    """A tool from $<env>, the venv's bin directory (where .ci/install-helm.sh puts its tools), or PATH."""
    if env and os.environ.get(env):
        return Path(os.environ[env])
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def require_tool(name: str, installer: str, env: str | None = None) -> Path:
    """A tool an integration test drives. When it is missing the test fails, naming the script that
    installs it: the integration tier is what CI runs, and a skip there would hide a broken install."""
    tool = find_tool(name, env)
    if tool is None:
        pytest.fail(f"{name} is not installed: run {installer} (bash scripts/test.sh runs every installer)")
    return tool


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    what: str = "",
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``condition`` until it returns something true, and return that; the exceptions in
    ``ignore`` count as "not yet". Past ``timeout``, fail with the last thing it returned or raised."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except ignore as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition} (last: {last!r})")


@dataclass
class Expected:
    """What the exporter should show for a set of finished runs, keyed as its metrics are labelled."""

    runs: Counter = field(default_factory=Counter)  # (agent, status, stop_reason)
    duration_count: Counter = field(default_factory=Counter)  # (agent, status)
    duration_sum: dict = field(default_factory=dict)
    ttft_count: Counter = field(default_factory=Counter)  # agent
    ttft_sum: dict = field(default_factory=dict)
    steps_count: Counter = field(default_factory=Counter)
    steps_sum: Counter = field(default_factory=Counter)
    run_tokens: Counter = field(default_factory=Counter)  # (agent, type)
    step_tokens: Counter = field(default_factory=Counter)  # (model, type)
    steps_total: Counter = field(default_factory=Counter)  # (model, status, stop_reason)


def expected_from_truth(truth: Iterable) -> Expected:
    exp = Expected()
    for run in truth:
        agent, status = run.agent_id, run.status
        # The run's stop reason, else the one its steps give (docs/servers.md).
        stop_reason = run.stop_reason or next((s.stop_reason for s in run.steps if s.stop_reason), None)
        exp.runs[(agent, status, enum_label(stop_reason))] += 1
        exp.duration_count[(agent, status)] += 1
        # The duration Letta records, else the run's wall clock (docs/servers.md).
        wall = (run.completed_at - run.created_at).total_seconds()
        seconds = run.total_duration_ns / 1e9 if run.total_duration_ns is not None else wall
        exp.duration_sum[(agent, status)] = exp.duration_sum.get((agent, status), 0.0) + seconds
        if run.ttft_ns is not None:
            exp.ttft_count[agent] += 1
            exp.ttft_sum[agent] = exp.ttft_sum.get(agent, 0.0) + run.ttft_ns / 1e9
        exp.steps_count[agent] += 1
        exp.steps_sum[agent] += run.num_steps
        for step in run.steps:
            tokens = {
                "prompt": step.prompt_tokens,
                "completion": step.completion_tokens,
                "cached": step.cached_tokens,
                "cache_read": step.cache_read_tokens,
                "cache_creation": step.cache_creation_tokens,
                "reasoning": step.reasoning_tokens,
            }
            for token_type, count in tokens.items():
                if count:
                    exp.run_tokens[(agent, token_type)] += count
                    exp.step_tokens[(step.model, token_type)] += count
            exp.steps_total[(step.model, enum_label(step.status), enum_label(step.stop_reason))] += 1
    return exp


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def served_text(source: Exporter | ExporterMetrics) -> str:
    """What /metrics serves now (rendered afresh) for an exporter or its ``ExporterMetrics``."""
    metrics = source.metrics if isinstance(source, Exporter) else source
    return b"".join(metrics.exposition.refresh().parts).decode()


def served_samples(source: Exporter | ExporterMetrics) -> Samples:
    return parse_metrics(served_text(source))


def select(samples: Samples, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """Sum samples of ``name`` grouped by the label ``keys`` (zero-valued groups dropped)."""
    out: Counter = Counter()
    for (sample_name, labels), value in samples.items():
        if sample_name != name:
            continue
        as_dict = dict(labels)
        out[tuple(as_dict.get(k, "") for k in keys)] += value
    return {k: v for k, v in out.items() if v}


def assert_matches_truth(samples: Samples, truth: list) -> None:
    exp = expected_from_truth(truth)
    flat = lambda c: {(k if isinstance(k, tuple) else (k,)): v for k, v in c.items() if v}  # noqa: E731
    assert select(samples, "letta_runs_total", ("agent_id", "status", "stop_reason")) == flat(exp.runs)
    assert select(samples, "letta_run_duration_seconds_count", ("agent_id", "status")) == flat(
        exp.duration_count
    )
    durations = select(samples, "letta_run_duration_seconds_sum", ("agent_id", "status"))
    assert durations.keys() == flat(exp.duration_sum).keys()
    for key, value in flat(exp.duration_sum).items():
        assert abs(durations[key] - value) < 1e-6 * max(1.0, value), key
    assert select(samples, "letta_run_ttft_seconds_count", ("agent_id",)) == flat(exp.ttft_count)
    ttft = select(samples, "letta_run_ttft_seconds_sum", ("agent_id",))
    for key, value in flat(exp.ttft_sum).items():
        assert abs(ttft[key] - value) < 1e-6 * max(1.0, value), key
    assert select(samples, "letta_run_steps_count", ("agent_id",)) == flat(exp.steps_count)
    assert select(samples, "letta_run_steps_sum", ("agent_id",)) == flat(exp.steps_sum)
    assert select(samples, "letta_run_tokens_total", ("agent_id", "type")) == flat(exp.run_tokens)
    assert select(samples, "letta_step_tokens_total", ("model", "type")) == flat(exp.step_tokens)
    assert select(samples, "letta_steps_total", ("model", "status", "stop_reason")) == flat(exp.steps_total)


def runs_counted(samples: Samples) -> float:
    return sum(select(samples, "letta_runs_total", ()).values())


class ExporterProcess:
    """The real exporter as a child process (``python -m exporter``), logs captured to a file."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = tmp_path / f"exporter-{self.port}.log"
        self.args = [sys.executable, "-m", "exporter", *args, "--listen-address", "127.0.0.1",
                     "--port", str(self.port)]  # fmt: skip
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LETTA")}
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_until: str = "/readyz") -> ExporterProcess:
        """Start and wait until ``wait_until`` answers 200 (``/healthz``: only that it serves)."""
        self.spawn()
        wait_for(lambda: self.answers(wait_until), timeout=20, what=f"exporter {wait_until}")
        return self

    def spawn(self) -> ExporterProcess:
        """Start the process without waiting for it to answer."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log)
        return self

    def answers(self, path: str) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}: {self.logs()[-2000:]}")
        try:
            return httpx.get(self.url + path, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def scrape(self) -> Samples:
        return parse_metrics(httpx.get(self.url + "/metrics", timeout=5).text)

    def scrape_caught_up(self, runs: int, timeout: float, then: float = 1.0) -> Samples:
        """Wait until it has counted ``runs`` runs, let it poll ``then`` seconds more (a double count
        would show by then), and scrape."""
        wait_for(lambda: runs_counted(self.scrape()) >= runs, timeout=timeout, what="exporter to catch up")
        time.sleep(then)
        return self.scrape()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def make_exporter(sim, **settings: object) -> Exporter:
    """An in-process exporter against ``sim``; tests drive ``exporter.poller.tick()`` themselves."""
    # poll_interval sets how soon a run comes back after a failed read or for late data; tests tick
    # the poller themselves, quickly.
    base = dict(base_url=sim.base_url, max_requests_per_second=0, discovery_overlap=5, page_size=50,
                poll_interval=0.3)  # fmt: skip
    exporter = build_exporter(Settings(**{**base, **settings}))
    # Settle looks sooner than Letta needs (0.05 s doubling: 0.75 s in all, the simulator's write lag
    # is at most 0.5 s): the counts of looks tests check are the same, the waits shorter.
    exporter.enricher.options = replace(exporter.enricher.options, settle_delay=0.05)
    return exporter


def run(coro):
    return asyncio.run(coro)


async def ticks(exporter: Exporter, count: int, pause: float = 0.0) -> None:
    """``count`` polls, each followed by the enrichment of what it found ready."""
    for _ in range(count):
        await exporter.poller.tick()
        await exporter.enricher.join()
        if pause:
            await asyncio.sleep(pause)


async def settle(exporter: Exporter, sim, timeout: float = 20.0, expected: int | None = None) -> None:
    """Tick until the exporter has counted ``expected`` runs (default: every finished run the
    simulator knows of)."""
    assert await asyncio.to_thread(sim.wait_idle, timeout)
    target = len(sim.truth()) if expected is None else expected
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await exporter.poller.tick()
        await exporter.enricher.join()
        if runs_counted(served_samples(exporter)) >= target:
            await ticks(exporter, 1)  # one more: a second count would show up now
            return
        await asyncio.sleep(0.1)
    raise AssertionError("exporter did not catch up with the simulator")


async def poll_new_runs(exporter: Exporter, sim, count: int) -> None:
    """A baseline poll (what the simulator has so far is history), then ``count`` new runs, polled
    until the exporter has counted them."""
    await exporter.poller.tick()
    sim.burst(count)
    await settle(exporter, sim, expected=count)


class TotalsCollector(Collector):
    """The reference rendering of ``RunTotals``: prometheus-client's metric families, built afresh
    on each collect. The exporter's own (``TotalsText``) must write exactly what this does."""

    def __init__(self, totals: RunTotals) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        totals = self.totals
        for family in OUTCOME_FAMILIES:
            labels = totals.labels_of(family)
            if family.kind == "counter":
                counter = CounterMetricFamily(family.name, family.help, labels=labels)
                for key, value in sorted(totals.counters[family.name].items()):
                    counter.add_metric(key, value)
                yield counter
            else:
                histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
                bounds = [*totals.buckets[family.name], math.inf]
                for key, data in sorted(totals.histograms[family.name].items()):
                    cumulative = itertools.accumulate(data.counts)
                    buckets = [(floatToGoString(b), c) for b, c in zip(bounds, cumulative, strict=True)]
                    histogram.add_metric(key, buckets, data.total)
                yield histogram
