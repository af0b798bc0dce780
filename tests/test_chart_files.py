"""The Helm chart's files, checked without Helm (fast tier): the ci/ values matrix, the documented
values and the chart README's table, and the dashboards and rules the chart carries. What Helm
renders from them is tests/test_helm.py (integration tier)."""

from __future__ import annotations

import json
import sys

import yaml

from tests.helm_support import CHART, CI_VALUES, REPO

sys.path.insert(0, str(REPO / "helm"))
import values_table


def test_ci_values_cover_the_matrix() -> None:
    ids = {path.name.removesuffix("-values.yaml") for path in CI_VALUES}
    assert {
        "default",
        "existing-secret",
        "monitoring",
        "sidecar",
        "sidecar-native",
        "hardening-off",
        "hardening-max",
    } <= ids


def test_chart_reads_the_repository_dashboards_and_rules() -> None:
    """helm/letta-exporter/{dashboards,rules} are symlinks to the top-level directories (Helm reads
    only files inside the chart); whatever they are, the chart must see exactly the same files."""
    for top, pattern in [("dashboards", "*.json"), ("rules", "*.rules.y*ml")]:
        link = CHART / top
        if link.is_symlink():
            assert link.resolve() == (REPO / top).resolve(), f"{link} points elsewhere"
        originals = {p.name: p.read_bytes() for p in (REPO / top).glob(pattern)}
        assert originals, f"{top}/ has no {pattern}"
        seen = {p.name: p.read_bytes() for p in link.glob(pattern)}
        assert seen == originals, f"the chart's {top}/ differs from the repository's"


def test_values_are_documented_and_readme_table_is_current() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    documented = values_table.documented_keys(text)
    leaves = values_table.leaf_keys(yaml.safe_load(text))
    undocumented = [p for p in leaves if not any(p == d or p.startswith(d + ".") for d in documented)]
    assert not undocumented, "values without a '# --' comment"
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert values_table.replace_table(readme, values_table.render_table()) == readme, (
        "run: python helm/values_table.py --write"
    )
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(yaml.safe_load(text)) <= set(schema["properties"])
