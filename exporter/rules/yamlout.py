"""Writes rule groups as a Prometheus rules file that a person can read: a comment header, comments
that say why above sections and under alert names, multi-line expressions as literal blocks and long
annotations folded. yaml.dump would drop the comments and choose its own quoting, so the text is
written here, and read back to check it says exactly what the rules say."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable

import yaml

from exporter.rules.declare import Group, Rule

WIDTH = 100
_NBSP = "\x00"


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` (a long word may exceed it), never breaking inside a
    ``{{ ... }}`` template action, so an annotation stays readable as Go template."""
    guarded = re.sub(r"\{\{.*?\}\}", lambda m: m.group(0).replace(" ", _NBSP), text)
    lines = textwrap.wrap(guarded, width, break_long_words=False, break_on_hyphens=False)
    return [line.replace(_NBSP, " ") for line in lines]


def comment_lines(text: str, indent: int = 0, width: int = WIDTH) -> list[str]:
    """``text`` as ``#`` comment lines; a line of its own stays a line (tables, blank lines)."""
    pad = " " * indent
    out = []
    for paragraph in text.split("\n"):
        if not paragraph.strip():
            out.append(f"{pad}#")
            continue
        if paragraph.startswith((" ", "|")):  # preformatted: keep as is
            out.append(f"{pad}#{paragraph}" if paragraph.startswith(" ") else f"{pad}# {paragraph}")
            continue
        out += [f"{pad}# {line}" for line in wrap(paragraph, width - indent - 2)]
    return out


def _plain(value: str) -> bool:
    try:
        return yaml.safe_load(f"k: {value}") == {"k": value} and value == value.strip()
    except yaml.YAMLError:
        return False


def _scalar(key: str, value: str, indent: int, *, fold: bool = False) -> list[str]:
    pad = " " * indent
    if "\n" in value.rstrip("\n"):
        body = [f"{pad}  {line}" if line else "" for line in value.rstrip("\n").split("\n")]
        return [f"{pad}{key}: |", *body]
    if fold and len(pad) + len(key) + len(value) + 2 > WIDTH and "  " not in value:
        # Folded: each line break reads back as one space, so the text is unchanged.
        return [f"{pad}{key}: >-", *[f"{pad}  {line}" for line in wrap(value, WIDTH - indent - 2)]]
    return [f"{pad}{key}: {value if _plain(value) else json.dumps(value, ensure_ascii=False)}"]


def _mapping(key: str, values: dict[str, str], indent: int) -> list[str]:
    lines = [f"{' ' * indent}{key}:"]
    for name, value in values.items():
        # A summary stays one line, as alert lists show it; a description is a paragraph.
        lines += _scalar(name, value, indent + 2, fold=name == "description")
    return lines


def rule_lines(rule: Rule, first: bool) -> list[str]:
    lines = [] if first or not (rule.kind == "alert" or rule.comment) else [""]
    if rule.kind == "record":
        lines += comment_lines(rule.comment, 6) if rule.comment else []
        lines.append(f"      - record: {rule.name}")
    else:
        lines.append(f"      - alert: {rule.name}")
        lines += comment_lines(rule.comment, 8) if rule.comment else []
    lines += _scalar("expr", rule.expr, 8)
    if rule.for_:
        lines.append(f"        for: {rule.for_}")
    if rule.labels:
        lines += _mapping("labels", dict(rule.labels), 8)
    if rule.annotations:
        lines += _mapping("annotations", dict(rule.annotations), 8)
    return lines


def render(header: str, groups: Iterable[Group]) -> str:
    groups = list(groups)
    lines = [*comment_lines(header), "", "groups:"]
    for index, group in enumerate(groups):
        if index:
            lines.append("")
        lines += [f"  - name: {group.name}", "    rules:"]
        for position, rule in enumerate(group.rules):
            lines += [line.rstrip() for line in rule_lines(rule, position == 0)]
    text = "\n".join(lines) + "\n"
    expected = {
        "groups": [{"name": g.name, "rules": [_loaded(r) for r in g.rules]} for g in groups],
    }
    if yaml.safe_load(text) != expected:  # a quoting or folding slip must not change a rule
        raise AssertionError("the rules file written does not read back as the rules declared")
    return text


def _loaded(rule: Rule) -> dict[str, object]:
    """What Prometheus reads from the YAML written for ``rule``: a multi-line expression is a literal
    block, which ends in a newline."""
    out = rule.as_dict()
    expr = rule.expr.rstrip("\n")
    out["expr"] = expr + "\n" if "\n" in expr else expr
    return out
