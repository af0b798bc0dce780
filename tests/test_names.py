"""Agent and tool names: looked up by ID, cached, and exposed as info metrics to join on."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from exporter.names import NameLookup
from exporter.simulator.runs import TOOL_NAMES
from tests.support import make_exporter, poll_new_runs, run, select, served_samples, ticks


def counted_then_named(sim, runs: int) -> dict:
    """Samples after ``runs`` new runs are counted and later polls have looked every name up."""

    async def scenario():
        exporter = make_exporter(sim)
        await poll_new_runs(exporter, sim, runs)
        await ticks(exporter, 25)  # a quiet exporter looks up one name a poll
        return exporter

    return served_samples(run(scenario()))


def test_tool_labels_stay_ids_and_letta_tool_info_names_them(sim_factory) -> None:
    sim = sim_factory()
    samples = counted_then_named(sim, 30)
    used = {key[0] for key in select(samples, "letta_run_tool_calls_total", ("tool",))}
    assert used and all(tool.startswith("tool-") for tool in used)  # IDs, as /metrics reports them
    named = {dict(labels)["tool"]: dict(labels)["tool_name"]
             for (name, labels) in samples if name == "letta_tool_info"}  # fmt: skip
    assert named.keys() == used
    assert set(named.values()) <= set(TOOL_NAMES)
    retrieves = [r for r in sim.requests if r.path.startswith("/v1/tools/")]
    assert len(retrieves) == len(used)  # one lookup per tool, then the cache


def test_agent_names_join_on_agent_id(sim_factory) -> None:
    samples = counted_then_named(sim_factory(), 10)
    counted = {key[0] for key in select(samples, "letta_runs_total", ("agent_id",))}
    named = {dict(labels)["agent_id"] for (name, labels) in samples if name == "letta_agent_info"}
    assert counted and named == counted


def test_look_ups_take_at_most_one_percent_of_the_calls_one_to_five_a_poll() -> None:
    made = {"calls": 0}
    looked_up: list[str] = []

    async def fetch(item: str) -> SimpleNamespace:
        looked_up.append(item)
        return SimpleNamespace(name=f"name of {item}")

    lookup = NameLookup("agent", lambda: [f"agent-{n}" for n in range(40)], fetch, lambda names: None,
                        calls=lambda: made["calls"])  # fmt: skip

    def poll(calls_meanwhile: int) -> int:
        made["calls"] += calls_meanwhile
        before = len(looked_up)
        asyncio.run(lookup.refresh())
        return len(looked_up) - before

    assert [poll(0), poll(20), poll(300), poll(399), poll(10_000)] == [1, 1, 3, 3, 5]
    assert len(set(looked_up)) == len(looked_up)  # each name once, then the cache
