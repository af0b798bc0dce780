"""What finished runs added up to, as plain data: counts and histograms per label set.

The run-outcome families are declared in exporter/families.py (``outcome=True``); that list drives
what ``/metrics`` shows (``TotalsText``) and what the state file saves and restores
(``RunTotals.dump``/``load``). A family added there is exposed and persisted with nothing else to
remember but its computation in ``record``.

Recording happens on the event loop; rendering ``/metrics`` happens on a thread. The renderer
therefore reads copies of the dictionaries (``dict.copy`` is atomic under the GIL), and a histogram's
count is derived from its buckets, so a scrape never shows a count its buckets do not add up to.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.utils import floatToGoString

from exporter import families as f
from exporter.families import OUTCOME_FAMILIES as FAMILIES
from exporter.families import Family
from exporter.outcome import RunOutcome

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
    """Counts and histograms per family and label set. ``agent_label=False`` drops agent_id;
    ``buckets`` (by family name) replace a histogram's declared ones."""

    buckets: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    agent_label: bool = True
    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, HistogramData]] = field(default_factory=dict)
    version: int = 0  # counts the runs recorded: a renderer can tell whether anything changed

    def __post_init__(self) -> None:
        self.buckets = {
            family.name: tuple(self.buckets.get(family.name, family.buckets))
            for family in FAMILIES
            if family.kind == "histogram"
        }
        for family in FAMILIES:
            if family.kind == "counter":
                self.counters[family.name] = {}
            else:
                self.histograms[family.name] = {}

    def labels_of(self, family: Family) -> tuple[str, ...]:
        return family.label_names(self.agent_label)

    def add(self, family: Family, labels: Labels, amount: float = 1) -> None:
        series = self.counters[family.name]
        series[labels] = series.get(labels, 0) + amount

    def touch(self, family: Family, labels: Labels) -> None:
        """Create the series at zero, so rate() and panels see 0 rather than nothing."""
        self.counters[family.name].setdefault(labels, 0)

    def observe(self, family: Family, labels: Labels, value: float) -> None:
        bounds = self.buckets[family.name]
        series = self.histograms[family.name]
        data = series.get(labels)
        if data is None:
            data = series[labels] = HistogramData([0] * (len(bounds) + 1))
        data.observe(bounds, value)

    def record(self, outcome: RunOutcome, agent: Labels) -> None:
        """One finished run. ``agent`` is () when the agent label is off, else (agent label,)."""
        self.version += 1
        self.add(f.RUNS, (*agent, outcome.status, outcome.stop_reason))
        if outcome.ttft_seconds is not None:
            self.observe(f.TTFT, agent, outcome.ttft_seconds)
        if outcome.duration_seconds is not None:
            self.observe(f.DURATION, (*agent, outcome.status), outcome.duration_seconds)
        if outcome.num_steps is not None:
            self.observe(f.STEPS, agent, outcome.num_steps)
        for token_type, count in outcome.run_tokens.items():
            if count:
                self.add(f.RUN_TOKENS, (*agent, token_type), count)
        for (model, token_type), count in outcome.step_tokens.items():
            self.add(f.STEP_TOKENS, (model, token_type), count)
        for key, count in outcome.steps.items():
            self.add(f.STEP_COUNTS, key, count)
        for tool, count in outcome.tool_calls.items():
            self.add(f.TOOL_CALLS, (tool,), count)
        if outcome.callback is not None:
            self.add(f.CALLBACKS, (outcome.callback,))
        for (model, provider), usd in outcome.cost_usd.items():
            self.add(f.COST, (*agent, model, provider), usd)
        for key, count in outcome.unpriced_tokens.items():
            self.add(f.UNPRICED, key, count)

    def count(self, family: Family) -> float:
        """A counter family's sum over its series."""
        return sum(self.counters[family.name].copy().values())

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
        parsed: list[tuple[Family, Labels, Any]] = []
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
                    parsed.append((family, labels, value))
                else:
                    counts = [int(count) for count in row["buckets"]]
                    if len(counts) != len(self.buckets[family.name]) + 1:
                        raise TotalsError(f"{family.name}: buckets changed since the state was written")
                    parsed.append((family, labels, HistogramData(counts, float(row["sum"]))))
        for family, labels, value in parsed:
            if isinstance(value, HistogramData):
                into = self.histograms[family.name].setdefault(labels, HistogramData([0] * len(value.counts)))
                into.counts = [a + b for a, b in zip(into.counts, value.counts, strict=True)]
                into.total += value.total
                into.version += 1
            else:
                self.add(family, labels, value)


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
            family.name: [floatToGoString(b) for b in (*totals.buckets[family.name], math.inf)]
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
