"""SLO files and the rules `letta-exporter slo-rules` generates from them (exporter/rules/slo*.py).

Fast tier: reading and checking SLO files, the command line, the generated expressions, and that
the committed SLO rules are what their SLO files generate. Integration tier (marker
``integration``): promtool accepts the generated rules, and the promtool unit tests in rules/tests/
fail when the SLO rules break (promtool from .ci/install-prometheus.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.defaults import DURATION_BUCKETS, TTFT_BUCKETS
from exporter.rules import slo_rules
from exporter.rules.slo import CLASSIFICATION, SloError, parse
from tests.support import ROOT, require_tool
from tests.test_config import run_cli

BUCKETS = {"ttft": TTFT_BUCKETS, "duration": DURATION_BUCKETS}
DEFAULT_SLO = ROOT / "rules" / "slo" / "default.yaml"
DEFAULT_RULES = ROOT / "rules" / "slo" / "default.rules.yml"
EXAMPLE = """\
objectives:
  - name: all-success
    sli: success
    objective: 99.9
  - name: support-ttft
    sli: ttft
    threshold: 2.5
    objective: 95
    period: 7d
    agents:
      name: "support-.*"
  - name: vip-duration
    sli: duration
    threshold: 102.4
    objective: 99
    agents:
      ids: [agent-1.a, agent-2]
"""


def write(tmp_path: Path, text: str, name: str = "slos.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rules_of(text: str) -> dict[tuple[str, str], dict]:
    """(slo label, record or alert name) -> the rule."""
    out = {}
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            out[(rule["labels"]["slo"], rule.get("record") or rule["alert"])] = rule
    return out


def generated(text: str) -> dict[tuple[str, str], dict]:
    return rules_of(slo_rules.render(parse(text, "slos.yaml", BUCKETS)))


# --- the file ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "nearest"),
    [(12, "10 and 20"), (0.3, "0.25 and 0.5"), (5000, "2560"), (0.0001, "0.001")],
)
def test_a_latency_threshold_that_is_no_bucket_bound_is_refused_naming_the_nearest(
    threshold: float, nearest: str
) -> None:
    text = f"objectives:\n  - name: fast\n    sli: ttft\n    threshold: {threshold}\n    objective: 99\n"
    with pytest.raises(SloError) as caught:
        parse(text, "team.yaml", BUCKETS)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("team.yaml: objective 'fast': threshold ")
    assert f"the nearest bounds are {nearest} " in message
    assert "LETTA_EXPORTER_TTFT_BUCKETS" in message


def test_a_threshold_is_checked_against_the_buckets_in_use() -> None:
    text = "objectives:\n  - name: d\n    sli: duration\n    threshold: 90\n    objective: 99\n"
    with pytest.raises(SloError, match=r"duration_seconds; the nearest bounds are 51\.2 and 102\.4 "):
        parse(text, "f.yaml", BUCKETS)
    slo = parse(text, "f.yaml", {**BUCKETS, "duration": (30.0, 90.0, 300.0)})
    assert slo.objectives[0].le == "90.0"  # as the exporter writes the bucket label


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("objectives: []", "objectives: expected a list"),
        ("objectivs: []", "unknown key 'objectivs'"),
        (
            "objectives:\n  - {name: a, sli: success, objective: 100}",
            "objective 'a': objective: expected a percent",
        ),
        ("objectives:\n  - {name: a, sli: success, objective: '99'}", "objective 'a': objective: expected"),
        ("objectives:\n  - {name: a, sli: latency, objective: 99}", "objective 'a': sli: expected success"),
        (
            "objectives:\n  - {name: a, sli: success, objective: 99, threshold: 1}",
            "only the ttft and duration",
        ),
        ("objectives:\n  - {name: a, sli: ttft, objective: 99}", "threshold: expected seconds"),
        ("objectives:\n  - {name: A_b, sli: success, objective: 99}", "name: lower-case"),
        ("objectives:\n  - {name: a, sli: success, objective: 99, thresold: 1}", "unknown key 'thresold'"),
        ("objectives:\n  - {sli: success, objective: 99}", "objectives[0]: missing 'name'"),
        ("period: 1d\nobjectives:\n  - {name: a, sli: success, objective: 99}", "shorter than the 3d window"),
        ("period: month\nobjectives:\n  - {name: a, sli: success, objective: 99}", "not a duration"),
        (
            "objectives:\n  - {name: a, sli: success, objective: 99}\n"
            "  - {name: a, sli: success, objective: 9}",
            "objective 'a': the name is used twice",
        ),
        (
            "objectives:\n  - {name: a, sli: success, objective: 99, agents: {ids: [x], name: y}}",
            "agents: give either ids",
        ),
        (
            "objectives:\n  - {name: a, sli: success, objective: 99, agents: {name: '('}}",
            "not a regular expression",
        ),
        ("objectives:\n  - {name: a, sli: success, objective: 99, agents: {ids: ['a b']}}", "agents.ids"),
        (
            "classification: {ignored_statuses: [x]}\nobjectives: []",
            "classification: missing 'failed_statuses'",
        ),
        ("objectives: [", "not YAML"),
    ],
)
def test_mistakes_are_refused_in_one_line_naming_the_file(text: str, complaint: str) -> None:
    with pytest.raises(SloError) as caught:
        parse(text, "team.yaml", BUCKETS)
    message = str(caught.value)
    assert message.startswith("team.yaml: ") and "\n" not in message, message
    assert complaint in message, message


def test_an_objective_keeps_its_percentage_exact() -> None:
    rules = generated("objectives:\n  - {name: a, sli: success, objective: 99.9}\n")
    assert rules[("a", "letta_slo:error_budget_remaining:ratio")]["expr"].endswith("/ 0.001")
    assert "/ 0.001 > 14.4" in rules[("a", "LettaSLOFastBurn")]["expr"]


# --- the rules -----------------------------------------------------------------------------------


def test_success_counts_the_declared_failures_and_leaves_cancelled_runs_out() -> None:
    rules = generated(EXAMPLE)
    events = rules[("all-success", "letta_slo:sli_events:rate5m")]["expr"]
    errors = rules[("all-success", "letta_slo:sli_errors:rate5m")]["expr"]
    assert events == 'sum by (job) (rate(letta_runs_total{status!~"cancelled"}[5m]))'
    assert CLASSIFICATION.ignored_statuses == ("cancelled",)
    assert 'rate(letta_runs_total{status=~"failed|expired"}[5m])' in errors
    assert 'status!~"failed|expired|cancelled", stop_reason=~"max_steps|max_tokens_exceeded"' in errors


def test_a_file_may_replace_the_classification() -> None:
    text = "classification:\n  failed_statuses: [failed]\n" + EXAMPLE
    rules = generated(text)
    events = rules[("all-success", "letta_slo:sli_events:rate5m")]["expr"]
    errors = rules[("all-success", "letta_slo:sli_errors:rate5m")]["expr"]
    assert events == "sum by (job) (rate(letta_runs_total[5m]))"  # nothing ignored: cancelled counts
    assert 'status=~"failed"' in errors and "stop_reason" not in errors


def test_objectives_cover_all_agents_together_or_each_selected_agent() -> None:
    rules = generated(EXAMPLE)
    together = rules[("all-success", "letta_slo:sli_events:rate5m")]["expr"]
    assert together.startswith("sum by (job) (") and "agent" not in together
    by_name = rules[("support-ttft", "letta_slo:sli_events:rate5m")]["expr"]
    assert "sum by (job, agent_id) (rate(letta_run_ttft_seconds_count[5m]))" in by_name
    assert by_name.rstrip().endswith('and on (job, agent_id)\nletta_agent_info{agent_name=~"support-.*"}')
    by_id = rules[("vip-duration", "letta_slo:sli_errors:rate5m")]["expr"]
    assert 'agent_id=~"agent-1\\\\.a|agent-2"' in by_id  # a regex literal, quoted as a PromQL string
    assert 'le="102.4"' in by_id and 'status!~"cancelled"' in by_id


def test_burn_rate_alerts_use_the_workbook_windows_and_the_period_budget() -> None:
    rules = generated(EXAMPLE)
    fast = rules[("support-ttft", "LettaSLOFastBurn")]
    assert fast["labels"] == {"severity": "critical", "slo": "support-ttft"}
    for long, short, factor in (("1h", "5m", "14.4"), ("6h", "30m", "6")):
        pair = (
            f'letta_slo:sli_error:ratio_rate{long}{{slo="support-ttft"}} / 0.05 > {factor}\n  and\n'
            f'  letta_slo:sli_error:ratio_rate{short}{{slo="support-ttft"}} / 0.05 > {factor}'
        )
        assert pair in fast["expr"]
    slow = rules[("support-ttft", "LettaSLOSlowBurn")]
    assert slow["labels"]["severity"] == "warning"
    assert "ratio_rate1d" in slow["expr"] and "> 3\n" in slow["expr"]
    assert "ratio_rate3d" in slow["expr"] and "ratio_rate6h" in slow["expr"]
    period = rules[("support-ttft", "letta_slo:sli_error:ratio_period")]["expr"]
    assert "[7d]" in period  # the objective's own period
    assert "[30d]" in rules[("all-success", "letta_slo:sli_error:ratio_period")]["expr"]


def test_default_slo_rules_are_what_the_default_file_generates() -> None:
    """The committed rules the chart ships agree with the SLO file they come from."""
    result = run_cli("slo-rules", "rules/slo/default.yaml", env={})
    assert result.returncode == 0, result.stderr
    assert result.stdout == DEFAULT_RULES.read_text()
    assert {o["name"] for o in yaml.safe_load(DEFAULT_SLO.read_text())["objectives"]} == {
        g["name"].removeprefix("letta-exporter.slo.") for g in yaml.safe_load(result.stdout)["groups"]
    }


def test_the_docs_quote_the_default_file_and_their_examples_are_valid() -> None:
    docs = (ROOT / "docs" / "slo.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", docs, re.S)
    shipped = "".join(
        line + "\n" for line in DEFAULT_SLO.read_text().splitlines() if not line.startswith("#")
    )
    assert shipped in blocks, "docs/slo.md does not quote rules/slo/default.yaml as it is"
    files = [b for b in blocks if "objectives:" in b]
    assert len(files) >= 2
    for block in files:
        parse(block, "docs/slo.md", BUCKETS)
    classification = next(b for b in blocks if b.startswith("classification:"))
    parse(classification + "objectives: [{name: a, sli: success, objective: 99}]", "docs/slo.md", BUCKETS)
    # The table of which runs count names the declared classification.
    section = docs.split("## Which runs are good", 1)[1].split("\n## ", 1)[0]
    for value in (
        *CLASSIFICATION.failed_statuses,
        *CLASSIFICATION.failed_stop_reasons,
        *CLASSIFICATION.ignored_statuses,
    ):
        assert f"`{value}`" in section, value


# --- the command line ----------------------------------------------------------------------------


def test_cli_refuses_a_threshold_off_the_buckets_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "objectives:\n  - {name: quick, sli: ttft, threshold: 12, objective: 99}\n")
    result = run_cli("slo-rules", str(path), env={})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"letta-exporter slo-rules: {path}: objective 'quick': threshold 12s is not a bucket bound of "
        "letta_run_ttft_seconds; the nearest bounds are 10 and 20 (bounds from LETTA_EXPORTER_TTFT_BUCKETS "
        "or the exporter's defaults)"
    ]


def test_cli_takes_the_buckets_the_exporter_uses(tmp_path: Path) -> None:
    path = write(tmp_path, "objectives:\n  - {name: quick, sli: ttft, threshold: 12, objective: 99}\n")
    output = tmp_path / "out.rules.yml"
    result = run_cli("slo-rules", str(path), "-o", str(output), env={"LETTA_EXPORTER_TTFT_BUCKETS": "1,3,12"})
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    assert 'le="12.0"' in text
    header = " ".join(text.split("groups:")[0].replace("#", " ").split())
    assert "with LETTA_EXPORTER_TTFT_BUCKETS=1,3,12:" in header
    # The flag wins over the environment.
    result = run_cli(
        "slo-rules", str(path), "--ttft-buckets", "5,10", env={"LETTA_EXPORTER_TTFT_BUCKETS": "1,3,12"}
    )
    assert result.returncode == 2 and "the nearest bounds are 10 (" in result.stderr


def test_cli_reports_a_missing_file_and_lists_itself_in_the_help(tmp_path: Path) -> None:
    result = run_cli("slo-rules", str(tmp_path / "none.yaml"), env={})
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"letta-exporter slo-rules: {tmp_path / 'none.yaml'}: cannot read: No such file or directory"
    )
    assert "slo-rules" in run_cli("--help", env={}).stdout


# --- promtool ------------------------------------------------------------------------------------


def promtool() -> str:
    return str(require_tool("promtool", ".ci/install-prometheus.sh"))


@pytest.mark.integration
def test_promtool_accepts_generated_rules(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    output = tmp_path / "example.rules.yml"
    assert run_cli("slo-rules", str(path), "-o", str(output), env={}).returncode == 0
    files = [DEFAULT_RULES, ROOT / "rules" / "tests" / "slo" / "agents.rules.yml", output]
    result = subprocess.run([promtool(), "check", "rules", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def run_slo_unit_tests(tmp_path: Path, test_file: str, rules_file: str, rules_text: str) -> str:
    """promtool's unit test ``test_file`` (in rules/tests/) against ``rules_text`` in place of
    ``rules_file``; returns promtool's output, failing unless the test failed."""
    copy = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", copy)
    (copy / rules_file).write_text(rules_text)
    result = subprocess.run(
        [promtool(), "test", "rules", str(copy / "tests" / test_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0, "promtool's unit tests passed on broken SLO rules"
    return result.stdout + result.stderr


@pytest.mark.integration
def test_slo_unit_tests_fail_when_the_page_stops_paging(tmp_path: Path) -> None:
    broken = DEFAULT_RULES.read_text().replace("> 14.4", "> 1000").replace("> 6\n", "> 1000\n")
    assert broken != DEFAULT_RULES.read_text()
    output = run_slo_unit_tests(tmp_path, "slo-default.test.yml", "slo/default.rules.yml", broken)
    assert "alertname: LettaSLOFastBurn" in output and "alertname: LettaSLOSlowBurn" not in output


@pytest.mark.integration
def test_slo_unit_tests_fail_when_cancelled_runs_count(tmp_path: Path) -> None:
    text = DEFAULT_SLO.read_text() + "classification:\n  failed_statuses: [failed, expired, cancelled]\n"
    broken = slo_rules.render(parse(text, "rules/slo/default.yaml", BUCKETS))
    output = run_slo_unit_tests(tmp_path, "slo-default.test.yml", "slo/default.rules.yml", broken)
    assert 'job="healthy"' in output or "job=healthy" in output.replace('"', "")


@pytest.mark.integration
def test_slo_unit_tests_fail_when_an_objective_covers_unselected_agents(tmp_path: Path) -> None:
    source = ROOT / "rules" / "tests" / "slo" / "agents.yaml"
    text = source.read_text().replace('name: "support-.*"', 'name: ".*"')
    broken = slo_rules.render(parse(text, "rules/tests/slo/agents.yaml", BUCKETS))
    output = run_slo_unit_tests(tmp_path, "slo-agents.test.yml", "tests/slo/agents.rules.yml", broken)
    assert "agent-sales" in output
