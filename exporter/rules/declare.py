"""The shapes rules are declared in: a threshold, an alert, a rendered rule, a group.

An alert's texts (expression, annotations, doc lines) are templates whose ``${name}`` placeholders
take its thresholds, so each threshold is written once and every text built from it follows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SPOKEN = {"d": "day", "h": "hour", "m": "minute", "s": "second"}


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``${name}`` replaced by ``values[name]``. ``${`` appears in neither
    PromQL nor Prometheus' Go templates, so nothing else is taken for a placeholder."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for ${{{name}}} in {template[:60]!r}")
        return values[name]

    return _PLACEHOLDER.sub(replace, template)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def _parts(seconds: float) -> list[tuple[int, str]]:
    left, parts = int(seconds), []
    for unit, size in _UNITS:
        if left >= size:
            parts.append((left // size, unit))
            left %= size
    return parts


def prom_duration(seconds: float) -> str:
    """Seconds as Prometheus writes a duration: 300 -> 5m, 5400 -> 1h30m, 2.5 -> 2.5s."""
    if seconds != int(seconds) or seconds < 1:
        return f"{seconds:g}s"
    return "".join(f"{n}{unit}" for n, unit in _parts(seconds))


def spoken_duration(seconds: float) -> str:
    """Seconds for a sentence: 300 -> 5 minutes, 3600 -> 1 hour."""
    if seconds != int(seconds) or seconds < 1:
        return f"{seconds:g} seconds"
    return " ".join(f"{n} {_SPOKEN[unit]}{'s' if n != 1 else ''}" for n, unit in _parts(seconds))


def parse_duration(text: str) -> int:
    """A Prometheus duration of whole units (``30d``, ``1h30m``, ``4w``) in seconds."""
    sizes = dict(_UNITS) | {"w": 7 * 86400}
    if not re.fullmatch(r"(?:\d+[wdhms])+", text):
        raise ValueError(f"{text!r} is not a duration such as 30d, 4w or 12h")
    return sum(int(n) * sizes[unit] for n, unit in re.findall(r"(\d+)([wdhms])", text))


@dataclass(frozen=True)
class Threshold:
    """A number an alert compares against: ``promql`` is how the expression writes it, ``text``
    how annotations, docs and dashboards say it."""

    value: float
    unit: Literal["ratio", "seconds", "runs", "usd"]

    @property
    def promql(self) -> str:
        return f"{self.value:g}"

    @property
    def text(self) -> str:
        if self.unit == "ratio":
            return f"{self.value * 100:g}%"
        if self.unit == "seconds":
            return prom_duration(self.value)
        if self.unit == "usd":
            return f"${self.value:g}"
        return f"{self.value:g}"


@dataclass(frozen=True)
class Rule:
    """One rule as it goes into a rules file. ``comment`` says why: above a recording rule (where
    it heads a section) or under an alert's name."""

    kind: Literal["record", "alert"]
    name: str
    expr: str
    comment: str = ""
    for_: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The rule as Prometheus reads it (what the YAML written for it must load back to)."""
        out: dict[str, object] = {self.kind: self.name, "expr": self.expr}
        if self.for_:
            out["for"] = self.for_
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Alert:
    """One alert, declared once. ``expr`` takes each threshold's PromQL form; ``summary``,
    ``description`` and ``fires_when`` (the tables of docs/dashboards.md and the rules file) take its
    text form, and ``${for}`` the ``for:`` duration spoken ("15 minutes")."""

    name: str
    severity: Literal["info", "warning", "critical"]
    for_seconds: int
    expr: str
    summary: str
    description: str
    fires_when: str
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    comment: str = ""

    @property
    def for_(self) -> str:
        return prom_duration(self.for_seconds)

    def _prose(self) -> dict[str, str]:
        return {key: t.text for key, t in self.thresholds.items()} | {
            "for": spoken_duration(self.for_seconds)
        }

    def say(self, template: str) -> str:
        """A text of this alert's with its thresholds filled in."""
        return fill(template, self._prose())

    def rule(self) -> Rule:
        return Rule(
            kind="alert",
            name=self.name,
            expr=fill(self.expr, {key: t.promql for key, t in self.thresholds.items()}),
            comment=self.comment,
            for_=self.for_,
            labels={"severity": self.severity},
            annotations={"summary": self.say(self.summary), "description": self.say(self.description)},
        )
