"""``letta-exporter slo-rules FILE``: writes the Prometheus recording and alerting rules for the
objectives of an SLO file (docs/slo.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter.config import parse_buckets
from exporter.defaults import DURATION_BUCKETS, TTFT_BUCKETS
from exporter.rules import slo_rules
from exporter.rules.slo import BUCKET_SETTINGS, SloError, SloFile, load

EXIT_USAGE = 2
DEFAULTS: dict[str, tuple[float, ...]] = {"ttft": TTFT_BUCKETS, "duration": DURATION_BUCKETS}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="letta-exporter slo-rules",
        description="Write Prometheus recording and alerting rules (multi-window, multi-burn-rate "
        "alerts and the error budget left) for the objectives in an SLO file. A latency threshold must "
        "be a bucket bound of the exporter's histogram: give the buckets your exporter uses, by flag or "
        "by the same environment variables the exporter reads. See docs/slo.md.",
    )
    p.add_argument("file", type=Path, help="the SLO file (YAML), e.g. rules/slo/default.yaml")
    p.add_argument("-o", "--output", type=Path, help="write the rules here (default: standard output)")
    for kind, setting in BUCKET_SETTINGS.items():
        p.add_argument(
            f"--{kind}-buckets",
            metavar="BUCKETS",
            help=f"{kind} histogram bucket bounds in seconds, comma-separated "
            f"(default: ${setting}, else the exporter's defaults)",
        )
    return p


def _buckets(kind: str, flag: str | None) -> tuple[tuple[float, ...], bool]:
    """The bucket bounds in use for ``kind``, and whether they are the exporter's defaults."""
    given = flag if flag is not None else os.environ.get(BUCKET_SETTINGS[kind])
    if given is None or not given.strip():
        return DEFAULTS[kind], True
    try:
        buckets = parse_buckets(given)
    except ValueError as exc:
        raise SloError(f"{kind} buckets {given!r}: {exc}") from None
    return buckets, buckets == DEFAULTS[kind]


def _buckets_note(slo_file: SloFile, custom: dict[str, tuple[float, ...]]) -> str:
    """How to regenerate with the same buckets, for the header: only the ones the file's
    thresholds were checked against and that differ from the defaults."""
    used = {o.sli for o in slo_file.objectives}
    notes = [
        f"{BUCKET_SETTINGS[kind]}={','.join(f'{b:g}' for b in bounds)}"
        for kind, bounds in custom.items()
        if kind in used
    ]
    return " with " + " ".join(notes) if notes else ""


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    try:
        buckets, custom = {}, {}
        for kind in BUCKET_SETTINGS:
            buckets[kind], default = _buckets(kind, getattr(args, f"{kind}_buckets"))
            if not default:
                custom[kind] = buckets[kind]
        slo_file = load(args.file, buckets, source=str(args.file))
        text = slo_rules.render(slo_file, _buckets_note(slo_file, custom))
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text, encoding="utf-8")
    except SloError as exc:
        print(f"letta-exporter slo-rules: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"letta-exporter slo-rules: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0
