"""What the docs quote of the code is the code's: the figure table of docs/servers.md, and the waits
and defaults docs/architecture.md states."""

from __future__ import annotations

from exporter.config import Settings
from exporter.discovery import reaches
from exporter.enrichment import EnrichOptions
from exporter.figures import FIGURES
from tests.support import ROOT


def table_rows(text: str, marker: str) -> dict[str, str]:
    section = text.split(f"<!-- {marker}", 1)[1]
    rows = {}
    for line in section.splitlines()[3:]:
        if not line.startswith("| `"):
            break
        name, sources = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows[name.strip("`")] = sources
    return rows


def test_servers_page_lists_every_figure_with_its_sources_in_order() -> None:
    page = (ROOT / "docs" / "servers.md").read_text()
    expected = {
        figure.name: " → ".join(f"{take.what}{' (late)' if take.late else ''}" for take in figure.takes)
        for figure in FIGURES
    }
    assert table_rows(page, "figures-table") == expected


NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def test_the_settle_looks_the_docs_quote_are_the_codes() -> None:
    options = EnrichOptions()
    said = f"{NUMBERS[options.max_settle_checks]} looks, {options.settle_delay:g} s apart and doubling"
    for doc in ("servers.md", "architecture.md"):
        assert said in " ".join((ROOT / "docs" / doc).read_text().split()), doc


def test_the_discovery_reaches_the_docs_quote_are_the_codes() -> None:
    defaults = Settings()
    short, deep_every, reach = reaches(defaults.discovery_overlap, 1.0)
    assert short == 2.0  # at a 1 s poll, the larger of 2 s and two poll intervals
    said = " ".join((ROOT / "docs" / "architecture.md").read_text().split())
    assert (
        f"`LETTA_EXPORTER_DISCOVERY_OVERLAP`, {defaults.discovery_overlap:g} s: every {deep_every:g} s"
        in said
    )
    assert f"one and a half times that half ({reach:g} s)" in said
    assert reaches(defaults.discovery_overlap, 1.5)[0] == 3.0  # two poll intervals
