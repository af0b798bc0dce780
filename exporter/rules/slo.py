"""SLO files: service level objectives for Letta agent runs, read and checked.

A file lists objectives; each says which runs are good (its SLI), what share of them must be
(``objective``, percent) over what ``period``, and for which agents. Reading it checks everything
a rule generator would otherwise get wrong quietly: unknown keys, a latency threshold that is not a
histogram bucket bound (the SLI counts runs per bucket, so only a bound can be a threshold), a
period shorter than the longest alert window. Each problem is one line naming the file and the
objective. docs/slo.md describes the format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from prometheus_client.utils import floatToGoString

from exporter.rules.declare import parse_duration, prom_duration

Sli = Literal["success", "ttft", "duration"]
LATENCY_METRICS: dict[str, str] = {"ttft": "letta_run_ttft_seconds", "duration": "letta_run_duration_seconds"}
BUCKET_SETTINGS: dict[str, str] = {
    "ttft": "LETTA_EXPORTER_TTFT_BUCKETS",
    "duration": "LETTA_EXPORTER_DURATION_BUCKETS",
}
DEFAULT_PERIOD = "30d"
LONGEST_WINDOW = 3 * 86400  # the slow-burn ticket's long window: a period must hold it
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_]+")
_AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


class SloError(ValueError):
    """A problem with an SLO file, said in one line that names the file (and the objective)."""


@dataclass(frozen=True)
class Classification:
    """Which finished runs count against a success objective, declared once.

    A run counts as failed when its status is one of ``failed_statuses``, or when it completed but
    stopped for one of ``failed_stop_reasons`` (the step or token limit cut the agent off before it
    finished its turn). Runs with an ``ignored_status`` count neither way: a cancelled run is
    someone's decision to stop, not the platform failing, so it spends no error budget and earns
    none. An SLO file may replace this as a whole (its ``classification:`` key).
    """

    failed_statuses: tuple[str, ...] = ("failed", "expired")
    failed_stop_reasons: tuple[str, ...] = ("max_steps", "max_tokens_exceeded")
    ignored_statuses: tuple[str, ...] = ("cancelled",)


CLASSIFICATION = Classification()


@dataclass(frozen=True)
class Agents:
    """The agents an objective covers: all of them together (neither key), or each agent picked by
    ID or by a regular expression on its name (one SLI, and one alert, per agent)."""

    ids: tuple[str, ...] = ()
    name: str = ""

    @property
    def per_agent(self) -> bool:
        return bool(self.ids or self.name)

    def describe(self) -> str:
        if len(self.ids) == 1:
            return f"the agent {self.ids[0]}"
        if self.ids:
            return "each of the agents " + ", ".join(self.ids)
        if self.name:
            return f'each agent whose name matches "{self.name}"'
        return "all agents together"


@dataclass(frozen=True)
class Objective:
    name: str
    sli: Sli
    objective: Decimal  # percent of runs that must be good
    period_seconds: int
    description: str = ""
    agents: Agents = field(default_factory=Agents)
    threshold: float | None = None  # seconds, latency SLIs only
    le: str = ""  # the threshold's bucket label value, as the exporter writes it

    @property
    def budget(self) -> Decimal:
        """The share of runs allowed to be bad."""
        return (Decimal(100) - self.objective) / Decimal(100)

    @property
    def period(self) -> str:
        return prom_duration(self.period_seconds)

    def describe(self, classification: Classification) -> str:
        """The objective in a sentence: what share of which runs must be good, and what good is."""
        share = f"{format(self.objective.normalize(), 'f')}% of"
        if self.sli == "success":
            failed = " or ".join(classification.failed_statuses)
            reasons = " or ".join(classification.failed_stop_reasons)
            stopped = f", or it completes with stop reason {reasons}" if reasons else ""
            ignored = " and ".join(classification.ignored_statuses)
            skipped = f"; {ignored} runs do not count" if ignored else ""
            good = f"finished runs succeed (a run fails with status {failed}{stopped}{skipped})"
        elif self.sli == "ttft":
            good = f"runs that report a time to first token get it within {self.threshold:g}s"
        else:
            ignored = " and ".join(classification.ignored_statuses)
            skipped = f" ({ignored} runs do not count)" if ignored else ""
            good = f"finished runs take at most {self.threshold:g}s{skipped}"
        return f"{share} {good}, over {self.period}, {self.agents.describe()}"


@dataclass(frozen=True)
class SloFile:
    source: str
    classification: Classification
    objectives: tuple[Objective, ...]


def load(path: Path, buckets: Mapping[str, Sequence[float]], source: str | None = None) -> SloFile:
    """Reads and checks an SLO file; ``buckets`` are the TTFT and duration bucket bounds in use."""
    where = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SloError(f"{where}: cannot read: {exc.strerror or exc}") from None
    return parse(text, where, buckets)


def parse(text: str, where: str, buckets: Mapping[str, Sequence[float]]) -> SloFile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SloError(f"{where}: not YAML: {' '.join(str(exc).split())}") from None
    top = _mapping(data, where, "the file", required={"objectives"}, optional={"period", "classification"})
    period = _period(top.get("period", DEFAULT_PERIOD), where)
    classification = _classification(top.get("classification"), where)
    items = top["objectives"]
    if not isinstance(items, list) or not items:
        raise SloError(f"{where}: objectives: expected a list of objectives")
    objectives = tuple(_objective(item, i, where, period, buckets) for i, item in enumerate(items))
    names = [o.name for o in objectives]
    for name in names:
        if names.count(name) > 1:
            raise SloError(f"{where}: objective {name!r}: the name is used twice")
    return SloFile(where, classification, objectives)


def _mapping(value: Any, where: str, what: str, *, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SloError(f"{where}: {what}: expected a mapping")
    unknown = sorted(set(value) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise SloError(f"{where}: {what}: unknown key {unknown[0]!r} (allowed: {allowed})")
    missing = sorted(required - set(value))
    if missing:
        raise SloError(f"{where}: {what}: missing {missing[0]!r}")
    return value


def _period(value: Any, where: str) -> int:
    try:
        seconds = parse_duration(str(value))
    except ValueError as exc:
        raise SloError(f"{where}: period: {exc}") from None
    if seconds < LONGEST_WINDOW:
        raise SloError(
            f"{where}: period {value} is shorter than the {prom_duration(LONGEST_WINDOW)} window the "
            "slow-burn alert reads"
        )
    return seconds


def _strings(value: Any, where: str, what: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
        raise SloError(f"{where}: {what}: expected a list of names ({pattern.pattern})")
    return tuple(value)


def _classification(value: Any, where: str) -> Classification:
    if value is None:
        return CLASSIFICATION
    keys = {"failed_statuses", "failed_stop_reasons", "ignored_statuses"}
    given = _mapping(value, where, "classification", required={"failed_statuses"}, optional=keys)
    lists = {k: _strings(v, where, f"classification.{k}", _LABEL_VALUE) for k, v in given.items()}
    if not lists["failed_statuses"]:
        raise SloError(f"{where}: classification.failed_statuses: name at least one status")
    return Classification(**{k: lists.get(k, ()) for k in keys})


def _objective(
    item: Any, index: int, where: str, period: int, buckets: Mapping[str, Sequence[float]]
) -> Objective:
    named = isinstance(item, dict) and "name" in item
    what = f"objective {item['name']!r}" if named else f"objectives[{index}]"
    fields = _mapping(
        item,
        where,
        what,
        required={"name", "sli", "objective"},
        optional={"description", "threshold", "period", "agents"},
    )
    at = f"{where}: {what}"
    name = fields["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SloError(f"{at}: name: lower-case letters, digits and '-' (it becomes the slo label)")
    sli = fields["sli"]
    if sli not in ("success", "ttft", "duration"):
        raise SloError(f"{at}: sli: expected success, ttft or duration, not {sli!r}")
    objective = _percent(fields["objective"], at)
    description = fields.get("description", "")
    if not isinstance(description, str):
        raise SloError(f"{at}: description: expected text")
    threshold, le = _threshold(fields.get("threshold"), sli, at, buckets)
    own_period = _period(fields["period"], at) if "period" in fields else period
    agents = _agents(fields.get("agents"), at)
    return Objective(name, sli, objective, own_period, " ".join(description.split()), agents, threshold, le)


def _percent(value: Any, at: str) -> Decimal:
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    # Through str: YAML's 99.9 is a float, and the budget must be 0.001, not 0.000999...
    percent = Decimal(str(value)) if number else Decimal(-1)
    if not Decimal(0) < percent < Decimal(100):
        raise SloError(f"{at}: objective: expected a percentage above 0 and below 100 (99.5), not {value!r}")
    return percent


def _threshold(
    value: Any, sli: str, at: str, buckets: Mapping[str, Sequence[float]]
) -> tuple[float | None, str]:
    if sli == "success":
        if value is not None:
            raise SloError(f"{at}: threshold: only the ttft and duration SLIs take a threshold")
        return None, ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SloError(f"{at}: threshold: expected seconds, one of the {LATENCY_METRICS[sli]} bucket bounds")
    bounds = sorted(buckets[sli])
    for bound in bounds:
        if math.isclose(bound, value, rel_tol=1e-9):
            return float(bound), floatToGoString(bound)
    below = [b for b in bounds if b < value]
    above = [b for b in bounds if b > value]
    nearest = " and ".join(f"{b:g}" for b in (below[-1:] + above[:1]))
    raise SloError(
        f"{at}: threshold {value:g}s is not a bucket bound of {LATENCY_METRICS[sli]}; the nearest bounds "
        f"are {nearest} (bounds from {BUCKET_SETTINGS[sli]} or the exporter's defaults)"
    )


def _agents(value: Any, at: str) -> Agents:
    if value is None:
        return Agents()
    given = _mapping(value, at, "agents", required=set(), optional={"ids", "name"})
    if len(given) != 1:
        raise SloError(f"{at}: agents: give either ids (a list of agent IDs) or name (a regular expression)")
    if "ids" in given:
        ids = _strings(given["ids"], at, "agents.ids", _AGENT_ID)
        if not ids:
            raise SloError(f"{at}: agents.ids: name at least one agent ID")
        return Agents(ids=ids)
    pattern = given["name"]
    try:
        if not isinstance(pattern, str) or not pattern:
            raise re.error("expected a regular expression")
        re.compile(pattern)
    except re.error as exc:
        raise SloError(f"{at}: agents.name: not a regular expression: {exc}") from None
    return Agents(name=pattern)
