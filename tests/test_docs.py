"""What the docs quote of the code is the code's: the settings table (docs/configuration.md), the
metric table (docs/metrics.md), the figure table (docs/servers.md), and the waits, retries,
defaults, probe intervals and page sizes the docs state, each phrase made from the value the wired
exporter runs with. And every link between the docs lands."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import pytest

from exporter import activity, defaults, names
from exporter.app import Exporter, build_exporter
from exporter.breaker import CircuitBreaker
from exporter.config import Settings, env_name, flag_name
from exporter.families import FAMILIES
from exporter.figures import FIGURES
from exporter.letta import client as letta_client
from exporter.letta import ratelimit
from exporter.rules import alerts
from exporter.traces.spans import DEFAULT_VALUE_LENGTH
from tests.support import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 10: "ten", 20: "twenty"}
# The few other words the docs use for the code's numbers: a KeyError means a number changed.
FRACTIONS = {4: "quarter", 40: "fortieth"}
SPANS = {0.25: "a quarter second's", 1.0: "a second's", 3600.0: "hour"}


def text(name: str) -> str:
    """A doc with its line breaks and runs of spaces as single spaces, as a phrase is matched."""
    return " ".join((ROOT / name).read_text().split())


def table_rows(page: str, marker: str) -> dict[str, list[str]]:
    """The rows of the table after ``<!-- marker``: first cell (backticks off) -> the other cells."""
    section = page.split(f"<!-- {marker}", 1)[1]
    rows = {}
    for line in section.splitlines()[3:]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


# -- the tables -----------------------------------------------------------------------------------


def test_servers_page_lists_every_figure_with_its_sources_in_order() -> None:
    rows = table_rows((ROOT / "docs" / "servers.md").read_text(), "figures-table")
    expected = {
        figure.name: " → ".join(f"{take.what}{' (late)' if take.late else ''}" for take in figure.takes)
        for figure in FIGURES
    }
    assert {name: cells[0] for name, cells in rows.items()} == expected


def metric_rows() -> dict[str, list[str]]:
    return table_rows((ROOT / "docs" / "metrics.md").read_text(), "metrics-table")


def test_metric_table_is_the_declared_families() -> None:
    """Names, types and labels as exporter/families.py declares them (an info family shows as a
    gauge, its keys as labels)."""
    kinds = {"info": "gauge"}
    documented = {
        name: (kind, {label.strip() for label in labels.split(",") if label.strip()})
        for name, (kind, labels, _) in metric_rows().items()
    }
    declared = {
        family.exposed: (kinds.get(family.kind, family.kind), set(family.label_names() + family.info))
        for family in FAMILIES
    }
    assert documented == declared


def test_metric_table_names_the_label_values_that_exist_from_the_start() -> None:
    """For a family whose one label (besides agent_id) has values at zero from the start, its row
    names each of them."""
    rows = metric_rows()
    checked = 0
    for family in FAMILIES:
        if family.zero and len(family.labels) == 1:
            meaning = rows[family.exposed][2]
            missing = [value for (value,) in family.zero if not re.search(rf"\b{value}\b", meaning)]
            assert not missing, f"{family.exposed}: the row does not name {missing}"
            checked += 1
    assert checked >= 9


def default_cell(name: str) -> str:
    """How the settings table writes a setting's default."""
    if name == "max_requests_per_second":
        cloud, self_hosted = defaults.CLOUD_RATE_CEILING, defaults.SELF_HOSTED_RATE_CEILING
        return f"{cloud:g} for Letta Cloud, {self_hosted:g} otherwise"
    value = Settings.model_fields[name].default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):  # buckets: the first and the last
        return f"`{value[0]:g} … {value[-1]:g}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def test_settings_table_lists_every_setting_with_its_flag_and_default() -> None:
    rows = table_rows((ROOT / "docs" / "configuration.md").read_text(), "settings-table")
    assert set(rows) == {env_name(name) for name in Settings.model_fields}
    for name in Settings.model_fields:
        flag, default, _ = rows[env_name(name)]
        assert flag.startswith(f"`{flag_name(name)}`"), name
        assert default.startswith(default_cell(name)), (name, default)


# -- the figures the docs quote -------------------------------------------------------------------


@pytest.fixture(scope="module")
def wired() -> Exporter:
    """The exporter as the default settings wire it (nothing is started)."""
    with pytest.MonkeyPatch.context() as patch:
        for variable in [name for name in os.environ if name.startswith("LETTA")]:
            patch.delenv(variable)
        return build_exporter(Settings(_env_file=None, base_url="http://127.0.0.1:1"))  # type: ignore[call-arg]


def seconds(value: float) -> str:
    return f"{value:g} s"


def spoken(value: float) -> str:
    """Seconds as the docs say a longer wait: "five minutes", "ten minutes", "24 h"."""
    if value % 3600 == 0 and value >= 86400:
        return f"{value / 3600:g} h"
    minutes = int(value // 60)
    return f"{NUMBERS.get(minutes, minutes)} minutes"


def phrases(exporter: Exporter) -> dict[str, list[str]]:
    """Each doc -> the phrases it must hold, made from the values the code runs with."""
    enrich = exporter.enricher.options
    stream = exporter.poller.stream
    assert stream is not None
    discovery = exporter.poller.discovery.options
    breaker = exporter.poller.breaker
    client = exporter.client
    limiter = client.limiter
    overlap = defaults.DISCOVERY_OVERLAP
    settle = f"{NUMBERS[enrich.max_settle_checks]} looks, {enrich.settle_delay:g} s apart and doubling"
    probe = spoken(defaults.TRACE_PROBE_INTERVAL)
    probe_minutes = f"{defaults.TRACE_PROBE_INTERVAL / 60:g} minutes"
    threshold = inspect.signature(CircuitBreaker).parameters["threshold"].default
    assert breaker.threshold == threshold
    falling = alerts.ALERTS[[a.name for a in alerts.ALERTS].index("LettaExporterFallingBehind")]
    quarter = limiter.ceiling / limiter.rate
    cloud, self_hosted = defaults.CLOUD_RATE_CEILING, defaults.SELF_HOSTED_RATE_CEILING
    return {
        "README.md": [
            f"the exporter polls Letta every {defaults.POLL_INTERVAL:g} s",
            f"(`LETTA_EXPORTER_POLL_INTERVAL`, {defaults.POLL_INTERVAL:g} s)",
            f"after {NUMBERS[threshold]} in a row polling pauses",
        ],
        "docs/architecture.md": [
            f"(`LETTA_EXPORTER_DISCOVERY_OVERLAP`, {overlap:g} s: every {discovery.deep_every:g} s)",
            f"one and a half times that half ({exporter.tracker.overlap:g} s)",
            f"the larger of {seconds(reach_floor())} and {NUMBERS[round(reach_polls())]} poll intervals",
            f"after {enrich.max_failures} failures it is recorded without that source",
            settle,
            f"every page ({stream.options.page_size:,} rows each)",
            f"{SPANS[stream.options.margin]} margin each side",
            f"after {NUMBERS[stream.options.max_looks]} windows it is read per run",
            f"the first {NUMBERS[stream.options.check_first]} runs the stream covers, then one in "
            f"{stream.options.check_every}",
            f"probed again every {probe}",
            f"A window reads at most {stream.options.max_pages} pages",
            f"fires when a run has waited {spoken(falling.thresholds['age'].value)} for "
            f"{NUMBERS[falling.for_seconds // 60]}",
            f"one probe per {probe_minutes}",
            f"one call per agent or tool per {SPANS[names.REFRESH_EVERY]}",
            f"at most {names.SHARE * 100:g} % of the calls (one to {NUMBERS[names.PER_POLL]} a poll)",
            f"When {NUMBERS[threshold]} polls in a row cannot reach Letta",
            f"doubling up to {spoken(breaker.max_pause)}",
            f"starts at a {FRACTIONS[round(quarter)]} of `LETTA_EXPORTER_MAX_REQUESTS_PER_SECOND` "
            f"({cloud:g}/s for Letta Cloud, {self_hosted:g}/s otherwise)",
            f"grows by a {FRACTIONS[ratelimit.STEPS_TO_CEILING]} of the range each second",
            f"never below {ratelimit.FLOOR:g}/s",
            f"({NUMBERS[round(client.total_timeout / defaults.REQUEST_TIMEOUT)]} request timeouts in all",
            f"in {letta_client.INFLATE_PIECE // 1024} KiB pieces",
            f"passes {letta_client.MAX_BODY_BYTES // 2**20} MiB",
            f"After {NUMBERS[threshold]} failed polls in a row",
        ],
        "docs/servers.md": [settle, f"`LETTA_EXPORTER_TRACE_PROBE_INTERVAL` ({probe_minutes})"],
        "docs/traces.md": [
            settle,
            f"`LETTA_EXPORTER_TRACE_PROBE_INTERVAL` ({probe_minutes})",
            f"`OTEL_BSP_MAX_QUEUE_SIZE` ({defaults.OTEL_BSP['MAX_QUEUE_SIZE']} spans)",
            f"`OTEL_BSP_MAX_EXPORT_BATCH_SIZE` ({defaults.OTEL_BSP['MAX_EXPORT_BATCH_SIZE']})",
            f"`OTEL_BSP_SCHEDULE_DELAY` ({defaults.OTEL_BSP['SCHEDULE_DELAY']} ms)",
            f"is `{defaults.TRACE_ATTRIBUTE_DENYLIST}`",
            f"({DEFAULT_VALUE_LENGTH} when unset",
        ],
        "docs/metrics.md": [
            f"TTFT uses vLLM's LLM-scale buckets ({defaults.TTFT_BUCKETS[0] * 1000:g} ms … "
            f"{defaults.TTFT_BUCKETS[-1]:g} s)",
            f"duration doubles from {defaults.DURATION_BUCKETS[0]:g} s",
            f"on to {defaults.DURATION_BUCKETS[-1] / 60:.0f} minutes",
            f"for over {spoken(discovery.max_in_flight_age)}",
            f"waited {NUMBERS[activity.STALLED_POLLS]} polls in a row",
        ],
        "docs/configuration.md": ["(Letta allows 1..1000)"],
    }


def reach_floor() -> float:
    """The short read's least reach below the watermark, whatever the poll interval."""
    from exporter.discovery import reaches

    return reaches(1e9, 1e-9)[0]


def reach_polls() -> float:
    """How many poll intervals a short read reaches, once they outgrow the floor."""
    from exporter.discovery import reaches

    return reaches(1e9, 100.0)[0] / 100.0


def test_the_figures_the_docs_quote_are_the_codes(wired: Exporter) -> None:
    missing = {
        doc: [phrase for phrase in said if phrase not in text(doc)] for doc, said in phrases(wired).items()
    }
    assert not {doc: said for doc, said in missing.items() if said}


def test_the_page_size_bound_the_docs_quote_is_the_settings() -> None:
    field = Settings.model_fields["page_size"]
    bounds = {type(m).__name__: m for m in field.metadata}
    assert (bounds["Ge"].ge, bounds["Le"].le) == (1, letta_client.MAX_PAGE)


# -- links ----------------------------------------------------------------------------------------


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_link_between_the_docs_lands() -> None:
    """Relative links in README.md and docs/ name files that exist and headings those files have."""
    broken = []
    for page in [ROOT / "README.md", *DOCS]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            if not where.exists() or (anchor and where.suffix == ".md" and anchor not in anchors(where)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


def test_the_readme_is_a_landing_page_with_a_map_of_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 210
    assert {page.name for page in DOCS} <= set(re.findall(r"\(docs/([\w-]+\.md)\)", readme))
