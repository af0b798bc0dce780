"""The chart README's values table, made from the `# --` comments in values.yaml.

    python helm/values_table.py          # print the table
    python helm/values_table.py --write  # replace the table in helm/letta-exporter/README.md
    python helm/values_table.py --check  # exit 1 when README.md is out of date

A key is documented by a comment block starting with `# --` right above it (continuation lines are
plain `#` comments); its default is read from the parsed YAML. tests/test_chart_files.py checks that every
key of values.yaml is documented (itself or through a documented parent) and that README.md holds
the current table.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "letta-exporter"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def documented_keys(text: str) -> dict[str, str]:
    """Dotted key path -> description, in file order."""
    docs: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            docs[".".join(key for _, key in stack)] = " ".join(part for part in pending if part)
            pending = None
    return docs


def leaf_keys(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every key whose value is not a non-empty mapping."""
    if isinstance(values, dict) and values:
        paths: list[str] = []
        for key, value in values.items():
            paths.extend(leaf_keys(value, f"{prefix}.{key}" if prefix else str(key)))
        return paths
    return [prefix] if prefix else []


def lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        node = node[part]
    return node


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def render_table(chart: Path = CHART) -> str:
    text = (chart / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, description in documented_keys(text).items():
        value = lookup(values, path)
        default = json.dumps(value, separators=(",", ":"))
        rows.append(f"| `{path}` | {type_name(value)} | `{default}` | {description.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


def replace_table(readme: str, table: str) -> str:
    before, start, rest = readme.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"README.md lacks the {START} ... {END} markers")
    return f"{before}{START}\n{table}{END}{after}"


def main(argv: list[str]) -> int:
    table = render_table()
    readme_path = CHART / "README.md"
    if "--write" in argv:
        readme_path.write_text(replace_table(readme_path.read_text(encoding="utf-8"), table), "utf-8")
        return 0
    if "--check" in argv:
        current = readme_path.read_text(encoding="utf-8")
        if replace_table(current, table) != current:
            print(
                "helm/letta-exporter/README.md: values table is stale; "
                "run python helm/values_table.py --write"
            )
            return 1
        return 0
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
