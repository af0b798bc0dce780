"""The code's shape, as docs/architecture.md describes it: no import cycles, settings and metric
declarations below what they configure, no work at import."""

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


def reach(module: str, graph: dict[str, set[str]]) -> set[str]:
    """Every exporter module ``module`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for nxt in graph.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen - {"exporter"}


def test_settings_own_settings_and_sit_below_what_they_configure() -> None:
    """defaults.py imports nothing of the exporter; config.py only the defaults and the price file's
    reader (a bad price file is a bad setting); and only the wiring (app.py, cli.py) reads
    ``Settings``: every other module takes the values it needs, so nothing imports back up."""
    graph = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}
    assert reach("exporter.defaults", graph) == set()
    assert reach("exporter.config", graph) <= {
        "exporter.defaults",
        "exporter.cost",
        "exporter.cost.price_file",
        "exporter.cost.rates",
    }
    readers = {
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module == "exporter.config"
        and any(alias.name == "Settings" for alias in node.names)
    }
    assert readers == {"exporter.app", "exporter.cli"}


def test_the_metric_declarations_sit_below_what_records_them() -> None:
    """families.py reads only label vocabularies from below (figures, the client's models and
    errors, labels) and the defaults: every module that records a metric can import it."""
    graph = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}
    below = reach("exporter.families", graph)
    assert below <= {
        "exporter.defaults",
        "exporter.figures",
        "exporter.labels",
        "exporter.letta",
        "exporter.letta.errors",
        "exporter.letta.models",
    }, below


def test_every_setting_default_is_a_name_in_defaults() -> None:
    """A default is defined once, in exporter/defaults.py: each ``Field(...)`` of config.py starts
    with ``defaults.NAME``, or ``None`` for a setting that is unset unless given."""
    tree = ast.parse((PACKAGE / "config.py").read_text())
    settings = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings")
    written = {}
    for node in settings.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Call) and node.value.args:
            written[node.target.id] = ast.unparse(node.value.args[0])  # type: ignore[attr-defined]
    assert len(written) >= 30
    literal = {
        name: first
        for name, first in written.items()
        if first != "None" and not first.startswith("defaults.")
    }
    assert not literal
