"""The README's /metrics sample is exposition the exporter can serve, and its scrape config one the
alerts find. (The settings and metric tables live in docs/ now: tests/test_docs.py.)"""

from __future__ import annotations

import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.families import FAMILIES
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def exposed_metrics() -> dict[str, frozenset[str]]:
    """Every family the exporter serves (its own, not process_/python_) with its labels, as declared."""
    return {family.exposed: frozenset(family.label_names() + family.info) for family in FAMILIES}


def fenced_block_after(marker: str) -> str:
    """The first fenced code block after ``<!-- marker``."""
    block = re.search(r"```\w*\n(.*?)```", README.split(f"<!-- {marker}", 1)[1], re.S)
    assert block, marker
    return block.group(1)


def test_metrics_sample_is_exposition_the_exporter_can_serve() -> None:
    sample = fenced_block_after("metrics-sample")
    exposed = exposed_metrics()
    names = set()
    for family in text_string_to_metric_families(sample):
        for s in family.samples:
            base = s.name if s.name in exposed else s.name.rsplit("_", 1)[0]
            assert base in exposed, s.name
            assert set(s.labels) - {"le"} == exposed[base], s.name
            names.add(base)
    assert len(names) >= 5
    assert "letta_exporter_poll_errors_total" in names  # the series that used to be missing


def test_scrape_config_job_name_is_one_the_down_alert_matches() -> None:
    config = yaml.safe_load(fenced_block_after("scrape-config"))
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    rules = yaml.safe_load((ROOT / "rules" / "letta-exporter.rules.yml").read_text())
    down = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "LettaExporterDown")
    matcher = re.search(r'up\{job=~"([^"]+)"\}', down["expr"])
    assert matcher, down["expr"]
    assert jobs and all(re.fullmatch(matcher.group(1), job) for job in jobs), (jobs, matcher.group(1))
    assert f'up{{job=~"{matcher.group(1)}"}}' in README
