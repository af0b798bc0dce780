"""The code's shape, as docs/architecture.md describes it: no import cycles, no work at import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "exporter"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path) for path in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every exporter module ``path`` imports: at the top, inside a function (a deferred import is
    a cycle hidden, not removed) or for type checking. ``from package import module`` is an edge to
    the module; a package that contains the importer is left out (Python initialises it first,
    whatever imports what)."""
    me = module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("exporter"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("exporter")}
    return {name for name in found if not me.startswith(name + ".")}


def test_no_import_cycles() -> None:
    graph = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycles.append([*trail[trail.index(node) :], node])
            return
        for nxt in graph.get(node, ()):
            if nxt != "exporter" and nxt in graph:
                visit(nxt, [*trail, node])

    for start in graph:
        visit(start, [])
    assert not cycles, cycles[0]


def test_importing_every_module_does_no_work() -> None:
    """No prometheus-client switch flipped, no bcrypt hash made, no thread started at import."""
    modules = sorted(name for name in MODULES if not name.endswith("__main__"))
    probe = (
        "import importlib, threading, time, prometheus_client.metrics as m\n"
        f"started = time.perf_counter()\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import exporter.webconfig as w\n"
        "assert m._use_created, 'disable_created_metrics() ran at import'\n"
        "assert w._dummy_hash.cache_info().currsize == 0, 'bcrypt hashed at import'\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
