"""What finished runs added up to, as plain data: counts and histograms per label set.

One declared list, ``FAMILIES``, says which metric families the run outcomes make; the same list
drives what ``/metrics`` shows (``TotalsText``), what the state file saves and restores
(``RunTotals.dump``/``load``), and the README's metric table (tests/test_readme.py). A family added
here is exposed and persisted with nothing else to remember.

Recording happens on the event loop; rendering ``/metrics`` happens on a thread. The renderer
therefore reads copies of the dictionaries (``dict.copy`` is atomic under the GIL), and a histogram's
count is derived from its buckets, so a scrape never shows a count its buckets do not add up to.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client.utils import floatToGoString

from exporter.outcome import RunOutcome

AGENT = "agent_id"


@dataclass(frozen=True)
class Family:
    name: str  # as exposed, without the _total of a counter
    kind: Literal["counter", "histogram"]
    help: str
    labels: tuple[str, ...]  # agent_id leads where the family is per agent; it is dropped when off
    buckets: str = ""  # for histograms: which bucket set (RunTotals takes them by this name)


FAMILIES: tuple[Family, ...] = (
    Family("letta_runs", "counter", "Finished runs by outcome, each counted once.",
           (AGENT, "status", "stop_reason")),
    Family("letta_run_ttft_seconds", "histogram", "Time to first token of finished runs that report one.",
           (AGENT,), "ttft"),
    Family("letta_run_duration_seconds", "histogram", "Wall time of finished runs.",
           (AGENT, "status"), "duration"),
    Family("letta_run_steps", "histogram", "Agent steps per finished run.", (AGENT,), "steps"),
    Family("letta_run_tokens", "counter", "Tokens used by finished runs, by type.", (AGENT, "type")),
    Family("letta_step_tokens", "counter", "Tokens used by the steps of finished runs, by model and type.",
           ("model", "type")),
    Family("letta_steps", "counter", "Steps of finished runs by model, step status and stop reason.",
           ("model", "status", "stop_reason")),
    Family("letta_run_tool_calls", "counter",
           "Tools used by finished runs, by tool ID (names in letta_tool_info).", ("tool",)),
    Family("letta_run_callbacks", "counter", "Run completion callbacks by outcome.", ("outcome",)),
    # New families rather than labels on the token families: a state file keeps each family's label
    # sets, so one written before would no longer load.
    Family("letta_run_cost_usd", "counter",
           "Estimated cost of finished runs in US dollars, by agent, model and provider (docs/cost.md).",
           (AGENT, "model", "provider")),
    Family("letta_unpriced_tokens", "counter",
           "Tokens of finished runs' steps whose model has no price (not in letta_run_cost_usd_total), "
           "by model and type.", ("model", "type")),
)  # fmt: skip
BY_NAME = {family.name: family for family in FAMILIES}

Labels = tuple[str, ...]


class TotalsError(ValueError):
    """Saved totals that do not fit these families (labels or buckets changed since)."""


@dataclass
class HistogramData:
    counts: list[int]  # per bucket, not cumulative; the last is +Inf
    total: float = 0.0
    version: int = 0  # bumped on every change, so a renderer can keep what it wrote for it

    def observe(self, bounds: Sequence[float], value: float) -> None:
        self.counts[bisect.bisect_left(bounds, value)] += 1
        self.total += value
        self.version += 1


@dataclass
class RunTotals:
    """Counts and histograms per family and label set. ``agent_label=False`` drops agent_id."""

    buckets: dict[str, tuple[float, ...]]
    agent_label: bool = True
    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, HistogramData]] = field(default_factory=dict)
    version: int = 0  # counts the runs recorded: a renderer can tell whether anything changed

    def __post_init__(self) -> None:
        for family in FAMILIES:
            if family.kind == "counter":
                self.counters[family.name] = {}
            else:
                self.histograms[family.name] = {}

    def labels_of(self, family: Family) -> tuple[str, ...]:
        return family.labels if self.agent_label or family.labels[:1] != (AGENT,) else family.labels[1:]

    def add(self, name: str, labels: Labels, amount: float = 1) -> None:
        series = self.counters[name]
        series[labels] = series.get(labels, 0) + amount

    def touch(self, name: str, labels: Labels) -> None:
        """Create the series at zero, so rate() and panels see 0 rather than nothing."""
        self.counters[name].setdefault(labels, 0)

    def observe(self, name: str, labels: Labels, value: float) -> None:
        bounds = self.buckets[BY_NAME[name].buckets]
        series = self.histograms[name]
        data = series.get(labels)
        if data is None:
            data = series[labels] = HistogramData([0] * (len(bounds) + 1))
        data.observe(bounds, value)

    def record(self, outcome: RunOutcome, agent: Labels) -> None:
        """One finished run. ``agent`` is () when the agent label is off, else (agent label,)."""
        self.version += 1
        self.add("letta_runs", (*agent, outcome.status, outcome.stop_reason))
        if outcome.ttft_seconds is not None:
            self.observe("letta_run_ttft_seconds", agent, outcome.ttft_seconds)
        if outcome.duration_seconds is not None:
            self.observe("letta_run_duration_seconds", (*agent, outcome.status), outcome.duration_seconds)
        if outcome.num_steps is not None:
            self.observe("letta_run_steps", agent, outcome.num_steps)
        for token_type, count in outcome.run_tokens.items():
            if count:
                self.add("letta_run_tokens", (*agent, token_type), count)
        for (model, token_type), count in outcome.step_tokens.items():
            self.add("letta_step_tokens", (model, token_type), count)
        for key, count in outcome.steps.items():
            self.add("letta_steps", key, count)
        for tool, count in outcome.tool_calls.items():
            self.add("letta_run_tool_calls", (tool,), count)
        if outcome.callback is not None:
            self.add("letta_run_callbacks", (outcome.callback,))
        for (model, provider), usd in outcome.cost_usd.items():
            self.add("letta_run_cost_usd", (*agent, model, provider), usd)
        for key, count in outcome.unpriced_tokens.items():
            self.add("letta_unpriced_tokens", key, count)

    # -- persistence ----------------------------------------------------------------------------

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for name, series in self.counters.items():
            out[name] = [{"labels": list(k), "value": v} for k, v in series.items() if v]
        for name, histograms in self.histograms.items():
            out[name] = [
                {"labels": list(k), "buckets": h.counts, "sum": h.total} for k, h in histograms.items()
            ]
        return out

    def load(self, saved: dict[str, Any]) -> None:
        """Add saved totals to these. Everything is checked before anything is added, so a file
        that does not fit leaves the totals as they were."""
        parsed: list[tuple[str, Labels, Any]] = []
        for family in FAMILIES:
            arity = len(self.labels_of(family))
            for row in saved.get(family.name, []):
                labels = tuple(str(label) for label in row["labels"])
                if len(labels) != arity:
                    raise TotalsError(f"{family.name}: label set changed since the state was written")
                if family.kind == "counter":
                    value = row["value"]
                    if not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
                        raise TotalsError(f"{family.name}: bad value {value!r}")
                    parsed.append((family.name, labels, value))
                else:
                    counts = [int(count) for count in row["buckets"]]
                    if len(counts) != len(self.buckets[family.buckets]) + 1:
                        raise TotalsError(f"{family.name}: buckets changed since the state was written")
                    parsed.append((family.name, labels, HistogramData(counts, float(row["sum"]))))
        for name, labels, value in parsed:
            if isinstance(value, HistogramData):
                into = self.histograms[name].setdefault(labels, HistogramData([0] * len(value.counts)))
                into.counts = [a + b for a, b in zip(into.counts, value.counts, strict=True)]
                into.total += value.total
                into.version += 1
            else:
                self.add(name, labels, value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class TotalsText:
    """The families in Prometheus' text format, as ``generate_latest`` writes them, but straight
    from the dictionaries and incrementally: each series' lines are kept and written again only when
    its value changed since the last rendering. With thousands of agents (hundreds of thousands of
    lines) a rendering then costs about a copy of the text, not a formatting of every line
    (tests/test_totals.py holds the result equal to prometheus-client's).

    Renderings run on one thread at a time (the exposition's), while runs are recorded on the event
    loop: a series is read value-first, so one changed mid-rendering is written again next time."""

    def __init__(self, totals: RunTotals) -> None:
        self.totals = totals
        # Per family: label values in sorted order, and per series (value or version, its lines).
        self._order: dict[str, list[Labels]] = {family.name: [] for family in FAMILIES}
        self._lines: dict[str, dict[Labels, tuple[float, bytes]]] = {family.name: {} for family in FAMILIES}
        self._headers = {family.name: _header(family) for family in FAMILIES}
        self._bounds = {
            family.name: [floatToGoString(b) for b in (*totals.buckets[family.buckets], math.inf)]
            for family in FAMILIES
            if family.kind == "histogram"
        }

    def render(self) -> list[bytes]:
        """The text, in pieces: each the kept text of one series (or a family's header), shared
        with this cache rather than copied."""
        parts: list[bytes] = []
        for family in FAMILIES:
            parts.append(self._headers[family.name])
            counter = family.kind == "counter"
            series = (self.totals.counters if counter else self.totals.histograms)[family.name].copy()
            names = self.totals.labels_of(family)
            cache = self._lines[family.name]
            for key in self._keys(family, series):
                data = series[key]
                # A histogram's version is read before its counts: a change after it is written next time.
                stamp = data if counter else data.version
                kept = cache.get(key)
                if kept is None or kept[0] != stamp:
                    if counter:
                        text = _counter_line(family.name, names, key, data)
                    else:
                        text = _histogram_lines(family.name, names, key, self._bounds[family.name], data)
                    kept = cache[key] = (stamp, text)
                parts.append(kept[1])
        return parts

    def _keys(self, family: Family, series: dict[Labels, Any]) -> list[Labels]:
        order = self._order[family.name]
        if len(order) != len(series):  # series are only ever added: a new one changes the count
            order = self._order[family.name] = sorted(series)
            lines = self._lines[family.name]
            for gone in lines.keys() - series.keys():
                del lines[gone]
        return order


def _header(family: Family) -> bytes:
    name = f"{family.name}_total" if family.kind == "counter" else family.name
    return f"# HELP {name} {family.help}\n# TYPE {name} {family.kind}\n".encode()


def _pairs(names: Sequence[str], values: Sequence[str]) -> list[str]:
    # prometheus-client writes label pairs sorted by name; the same here, so the two agree.
    return [f'{name}="{_escape(value)}"' for name, value in sorted(zip(names, values, strict=True))]


def _counter_line(name: str, names: Sequence[str], key: Labels, value: float) -> bytes:
    labels = ",".join(_pairs(names, key))
    braces = f"{{{labels}}}" if labels else ""
    return f"{name}_total{braces} {floatToGoString(value)}\n".encode()


def _histogram_lines(
    name: str, names: Sequence[str], key: Labels, bounds: list[str], data: HistogramData
) -> bytes:
    # Label pairs sorted by name put le in one place: each series' pairs are split around it once.
    pairs = _pairs(names, key)
    split = sum(1 for label in names if label < "le")
    before = "".join(f"{pair}," for pair in pairs[:split])
    after = "".join(f",{pair}" for pair in pairs[split:])
    out: list[str] = []
    running = 0
    for bound, count in zip(bounds, data.counts[:], strict=True):
        running += count
        out.append(f'{name}_bucket{{{before}le="{bound}"{after}}} {floatToGoString(running)}\n')
    braces = f"{{{','.join(pairs)}}}" if pairs else ""
    out.append(f"{name}_count{braces} {floatToGoString(running)}\n")
    out.append(f"{name}_sum{braces} {floatToGoString(data.total)}\n")
    return "".join(out).encode()
