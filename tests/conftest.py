"""Fixtures shared across the suite. Every server a test starts binds 127.0.0.1 and is stopped here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from exporter.simulator import SimConfig, Simulator

# Short, tidy runs: tests that want late visibility or write lag switch them on explicitly.
QUICK = dict(duration_range=(0.05, 0.3), late_visibility_fraction=0.0, write_lag_fraction=0.0)


# Both list-cursor behaviours a Letta server can have (docs/architecture.md, "Paging"); tests of
# exactly-once counting run under each with @pytest.mark.parametrize("cursor_semantics", BOTH_CURSORS).
BOTH_CURSORS = ("spec", "letta-0.16.8")


@pytest.fixture
def cursor_semantics() -> str:
    return "spec"  # Letta Cloud's, the default target


@pytest.fixture
def sim_factory(cursor_semantics: str) -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def make(**config: object) -> Simulator:
        options = {"seed": 7, "agents": 3, "cursor_semantics": cursor_semantics, **QUICK, **config}
        sim = Simulator(SimConfig(**options)).start(host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
