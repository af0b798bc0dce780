"""Files the repository generates (the rules file, doc tables, dashboards): write them, or only
report which differ from what the generator makes, as its ``--check`` mode does in tests and CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(outputs: Mapping[Path, str], *, check: bool, command: str) -> int:
    """Writes each path's text, or with ``check`` writes nothing and names the stale ones; 1 when
    any is stale."""
    stale = []
    for path, text in outputs.items():
        if not check:
            path.write_text(text, encoding="utf-8")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(os.path.relpath(path))
    for name in stale:
        print(f"{name} is out of date: run {command}", file=sys.stderr)
    return 1 if stale else 0
