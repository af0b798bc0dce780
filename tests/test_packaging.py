"""pyproject.toml uses the current metadata forms, so installing prints no setuptools deprecation."""

from __future__ import annotations

import re
import tomllib

from tests.support import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression_with_a_setuptools_that_reads_it() -> None:
    # The table form ({ text = ... }) makes setuptools >= 77 warn on every build; the string form
    # needs setuptools >= 77 (PEP 639).
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    requires = PYPROJECT["build-system"]["requires"]
    setuptools = next(req for req in requires if req.startswith("setuptools"))
    match = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert match and int(match.group(1)) >= 77, setuptools
