"""The Prometheus rules in rules/: promtool accepts them, their unit tests pass, and every alert the
issue asks for exists with a severity, a summary, a description and a non-trivial ``for:``. The SLO
rules (rules/slo/, and the per-agent ones the unit tests use) are checked by promtool here too; how
they are generated is tests/test_slo_rules.py.

The promtool checks are the integration tier (marker ``integration``): promtool comes from Debian's
``prometheus`` package (``.ci/install-prometheus.sh``), and a missing promtool fails them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.rules import alerts, recording, ruleset
from exporter.rules.alerts import ALERTS
from tests.support import require_tool
from tests.test_alert_declarations import with_threshold

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
SLO_RULE_FILES = [RULES_DIR / "slo" / "default.rules.yml", RULES_DIR / "tests" / "slo" / "agents.rules.yml"]
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
SLO_ALERTS = {"LettaSLOFastBurn", "LettaSLOSlowBurn"}

# The alerts users route and silence by name: none may go. More may be declared
# (exporter/rules/alerts.py); the rules file must hold exactly the declared ones.
KEPT_ALERTS = {
    "LettaExporterDown",
    "LettaExporterPollingStale",
    "LettaExporterUnauthorized",
    "LettaExporterFallingBehind",
    "LettaApiErrorsHigh",
    "LettaApiRateLimited",
    "LettaRunFailureRatioHigh",
    "LettaRunTTFTHigh",
    "LettaRunsStuck",
}
EXPECTED_ALERTS = {a.name for a in ALERTS}
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")


def promtool() -> str:
    return str(require_tool("promtool", ".ci/install-prometheus.sh"))


def _rules() -> list[dict]:
    rules: list[dict] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def _duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def test_rule_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["letta-exporter.rules.yml"]
    assert all(p.exists() for p in SLO_RULE_FILES)
    assert RULE_TESTS, "rules/tests/ has no promtool unit tests"


def test_every_expected_alert_is_defined_with_severity_annotations_and_for() -> None:
    alerts = {r["alert"]: r for r in _rules() if "alert" in r}
    assert KEPT_ALERTS <= EXPECTED_ALERTS
    assert set(alerts) == EXPECTED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), name
        annotations = rule["annotations"]
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        assert annotations.get("description", "").strip(), f"{name}: no description"
        assert "{{" in annotations["description"], f"{name}: description has no templated value"
        # Long enough to ride out a scrape or poll hiccup (anti-flapping).
        assert _duration_seconds(rule.get("for", "0s")) >= 300, f"{name}: for: shorter than 5m"


def test_recording_rules_follow_level_metric_operation_naming() -> None:
    records = [r["record"] for r in _rules() if "record" in r]
    assert records, "no recording rules"
    for name in records:
        assert RECORD_NAME.match(name), f"{name} is not level:metric:operation"
        assert name.split(":")[0] in ("letta", "letta_agent", "letta_instance"), name
    assert len(records) == len(set(records)), "a recording rule is defined twice"
    assert "letta:run_ttft_seconds:p95_rate5m" in records
    assert "letta_agent:run_ttft_seconds:p95_rate5m" in records


def test_every_alert_is_unit_tested() -> None:
    tested: set[str] = set()
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    tested.add(case["alertname"])
    wanted = EXPECTED_ALERTS | SLO_ALERTS
    assert tested >= wanted, f"alerts never shown firing: {wanted - tested}"


def test_thresholds_are_documented_in_the_rules_file_and_docs() -> None:
    header = RULE_FILES[0].read_text().split("groups:")[0]
    docs = (ROOT / "docs" / "dashboards.md").read_text()
    for name in EXPECTED_ALERTS:
        assert name in header, f"{name} missing from the thresholds table at the top of the rules file"
        assert name in docs, f"{name} missing from docs/dashboards.md"


@pytest.mark.integration
def test_promtool_check_rules() -> None:
    files = [*RULE_FILES, *SLO_RULE_FILES]
    result = subprocess.run(
        [promtool(), "check", "rules", *map(str, files)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


@pytest.mark.integration
def test_promtool_rule_unit_tests_pass() -> None:
    # promtool resolves rule_files relative to the test file, so run from anywhere.
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


@pytest.mark.integration
def test_promtool_unit_tests_catch_a_broken_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tests are not vacuous, and they pin the declared thresholds: with LettaRunsStuck's
    threshold raised in its declaration so it can no longer fire, and LettaApiErrorsHigh's lowered so
    the quiet instance fires too, the regenerated rules fail promtool's unit tests."""
    # with_threshold changes the current declarations: the second change comes on top of the first.
    monkeypatch.setattr(alerts, "ALERTS", with_threshold("LettaRunsStuck", "age", 1e9))
    monkeypatch.setattr(alerts, "ALERTS", with_threshold("LettaApiErrorsHigh", "ratio", 0.001))
    broken = ruleset.render(alerts.ALERTS, recording.RECORDS)
    assert "letta_active_run_max_age_seconds > 1e+09" in broken
    assert "exporter_api_errors:ratio_rate5m > 0.001" in broken
    (tmp_path / "rules" / "tests").mkdir(parents=True)
    (tmp_path / "rules" / RULE_FILES[0].name).write_text(broken)
    test_file = RULES_DIR / "tests" / "letta-exporter.rules.test.yml"
    (tmp_path / "rules" / "tests" / test_file.name).write_text(test_file.read_text())
    result = subprocess.run(
        [promtool(), "test", "rules", str(tmp_path / "rules" / "tests" / test_file.name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "alertname: LettaRunsStuck" in output
    assert "alertname: LettaApiErrorsHigh" in output
