"""Fixtures shared across the suite. Every server a test starts binds 127.0.0.1 and is stopped here.

Two tiers (markers registered in pyproject.toml): plain ``pytest`` runs the fast tier and leaves out
the ``integration`` tier (real Prometheus/promtool, Helm, hadolint, Docker, Grafana's schema, the
rotel collector, a cluster; and the ``slow`` soak and benchmark runs). ``bash scripts/test.sh``
installs the tools and runs both with LETTA_EXPORTER_INTEGRATION=1, which turns every skip into a
failure: in that run a skipped test would hide a broken install.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from exporter.simulator import Faults, SimConfig, Simulator
from tests.support import QUICK, FakeClock

INTEGRATION_RUN = os.environ.get("LETTA_EXPORTER_INTEGRATION") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if INTEGRATION_RUN and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in the full run (LETTA_EXPORTER_INTEGRATION=1): {reason}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# The Letta generations the exporter serves (exporter/simulator/simconfig.py, docs/servers.md); tests of
# exactly-once counting run under each with @pytest.mark.parametrize("generation", GENERATIONS). The
# spec's in the fast tier; each other one adds their time again, so it runs in the full run (the
# quickest of those tests runs all of them in the fast tier: EVERY_GENERATION).
OTHER_GENERATIONS = ("letta-0.16.8", "letta-0.11", "cloud")
GENERATIONS = ("spec", *(pytest.param(g, marks=pytest.mark.integration) for g in OTHER_GENERATIONS))
EVERY_GENERATION = ("spec", *OTHER_GENERATIONS)


@pytest.fixture
def generation() -> str:
    return "spec"  # the published spec (Letta Cloud's cursors), the default target


@pytest.fixture
def sim_factory(generation: str) -> Iterator[Callable[..., Simulator]]:
    """``sim_factory(**config)``: a simulator serving on loopback (seed 7, three agents, quick tidy
    runs, the ``generation`` fixture's Letta unless ``config`` says otherwise; ``clock=`` and
    ``faults=`` go to the simulator). All are stopped after the test."""
    started: list[Simulator] = []

    def make(clock: FakeClock | None = None, faults: Faults | None = None, **config: object) -> Simulator:
        options = {"seed": 7, "agents": 3, "generation": generation, **QUICK, **config}
        kwargs = {"clock": clock} if clock is not None else {}
        sim = Simulator(SimConfig(**options), faults, **kwargs).start(host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
