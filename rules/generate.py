"""Writes the files made from the rule declarations, so they cannot disagree with them.

    python rules/generate.py          # rewrite them
    python rules/generate.py --check  # exit 1 if a committed file differs from what this writes

From exporter/rules/alerts.py and recording.py: rules/letta-exporter.rules.yml and the alert table
of docs/dashboards.md. From each SLO file below: its rules, as
`letta-exporter slo-rules FILE` writes them with the exporter's default buckets.
tests/test_alert_declarations.py and tests/test_slo_rules.py fail while a committed file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.rules import alerts, recording, ruleset, slo_rules, tables  # noqa: E402
from exporter.rules.cli import DEFAULTS  # noqa: E402
from exporter.rules.generated import write_or_check  # noqa: E402
from exporter.rules.slo import load  # noqa: E402

RULES_FILE = "rules/letta-exporter.rules.yml"
ALERTS_DOC = "docs/dashboards.md"  # its alert table
# SLO file -> the rules generated from it. The default objectives ship with the Helm chart; the
# per-agent ones are what rules/tests/slo-agents.test.yml tests.
SLO_FILES = {
    "rules/slo/default.yaml": "rules/slo/default.rules.yml",
    "rules/tests/slo/agents.yaml": "rules/tests/slo/agents.rules.yml",
}


def slo_rules_text(source: str) -> str:
    return slo_rules.render(load(ROOT / source, DEFAULTS, source=source))


def outputs() -> dict[str, str]:
    """Repository path -> the text it should hold."""
    out = {RULES_FILE: ruleset.render(alerts.ALERTS, recording.RECORDS)}
    table = tables.markdown_table(alerts.ALERTS)
    out[ALERTS_DOC] = tables.replace_table((ROOT / ALERTS_DOC).read_text(encoding="utf-8"), table, ALERTS_DOC)
    out |= {target: slo_rules_text(source) for source, target in SLO_FILES.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args(argv)
    files = {ROOT / name: text for name, text in outputs().items()}
    return write_or_check(files, check=args.check, command="python rules/generate.py")


if __name__ == "__main__":
    sys.exit(main())
