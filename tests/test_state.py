"""The state file: atomic writes, restarts that neither lose nor double-count, and corrupt files."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from exporter.families import FAMILIES
from exporter.state import STATE_VERSION, StateFile
from tests.conftest import GENERATIONS
from tests.support import (
    ROOT,
    assert_matches_truth,
    make_exporter,
    poll_new_runs,
    runs_counted,
    served_samples,
    settle,
)


def test_save_is_atomic_and_versioned(tmp_path, monkeypatch) -> None:
    store = StateFile(tmp_path / "state.json")
    store.save({"version": STATE_VERSION, "n": 1})
    assert json.loads(store.path.read_text()) == {"version": STATE_VERSION, "n": 1}
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"

    def crash(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.save({"version": STATE_VERSION, "n": 2})
    monkeypatch.undo()
    # The interrupted write left the previous state whole.
    assert json.loads(store.path.read_text())["n"] == 1


@pytest.mark.parametrize("generation", GENERATIONS)
def test_restart_continues_counters_and_counts_runs_that_ended_while_down(sim_factory, tmp_path) -> None:
    sim = sim_factory()
    state_file = tmp_path / "state.json"

    async def scenario():
        first = make_exporter(sim, state_file=state_file, page_size=10)
        await poll_new_runs(first, sim, 8)
        stuck = sim.add_stuck(2)
        await asyncio.sleep(0.2)
        await first.poller.tick()
        assert set(stuck) <= set(first.tracker.in_flight)
        before = runs_counted(served_samples(first))
        await first.client.aclose()

        # Down: new runs finish, and the runs that were in flight end too.
        sim.burst(26)  # more than two pages of 10
        sim.release_stuck()
        assert await asyncio.to_thread(sim.wait_idle, 20)

        second = make_exporter(sim, state_file=state_file, page_size=10)
        assert runs_counted(served_samples(second)) == before == 8
        await settle(second, sim)
        return second

    second = asyncio.run(scenario())
    samples = served_samples(second)
    assert runs_counted(samples) == 36
    assert_matches_truth(samples, sim.truth())


def test_crash_mid_tick_redoes_the_tick_without_double_counting(sim_factory, tmp_path) -> None:
    """A kill -9 after recording but before the state write: the restart counts those runs once."""
    sim = sim_factory()
    state_file = tmp_path / "state.json"

    async def scenario():
        first = make_exporter(sim, state_file=state_file)
        await poll_new_runs(first, sim, 5)
        saved = json.loads(state_file.read_text())
        sim.burst(4)
        assert await asyncio.to_thread(sim.wait_idle, 20)
        first.poller.after_tick.clear()  # the process dies before this tick's state write
        for _ in range(4):
            await first.poller.tick()
        assert runs_counted(served_samples(first)) == 9
        await first.client.aclose()
        assert json.loads(state_file.read_text()) == saved

        second = make_exporter(sim, state_file=state_file)
        await settle(second, sim)
        return second

    second = asyncio.run(scenario())
    samples = served_samples(second)
    assert runs_counted(samples) == 9
    assert_matches_truth(samples, sim.truth())


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"version": 99}), json.dumps({"version": STATE_VERSION, "tracker": []})],
    ids=["garbage", "future-version", "wrong-shape"],
)
def test_unreadable_state_is_moved_aside_and_the_exporter_starts_fresh(
    sim_factory,
    tmp_path,
    caplog,
    content: str,
) -> None:
    sim = sim_factory()
    state_file = tmp_path / "state.json"
    state_file.write_text(content)

    async def scenario():
        exporter = make_exporter(sim, state_file=state_file)
        samples = served_samples(exporter)
        await exporter.poller.tick()
        await exporter.client.aclose()
        return samples

    samples = asyncio.run(scenario())
    assert samples[("letta_exporter_state_load_failures_total", ())] == 1
    moved = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_text() == content
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "unreadable" in errors[0].getMessage()
    # It started fresh, and the first tick wrote a good state file in the old one's place.
    assert json.loads(state_file.read_text())["version"] == STATE_VERSION


def test_changed_buckets_refuse_the_old_counts_whole(sim_factory, tmp_path) -> None:
    sim = sim_factory()
    state_file = tmp_path / "state.json"

    async def scenario():
        first = make_exporter(sim, state_file=state_file)
        await poll_new_runs(first, sim, 3)
        await first.client.aclose()

    asyncio.run(scenario())
    second = make_exporter(sim, state_file=state_file, duration_buckets="1,10")
    samples = served_samples(second)
    # Nothing half-loaded: no counts at all rather than counts without their histograms.
    assert runs_counted(samples) == 0
    assert samples[("letta_exporter_state_load_failures_total", ())] == 1


def test_a_version_1_file_is_read_into_the_current_layout(sim_factory, tmp_path) -> None:
    """Files written before the pipelined tracker (whole runs in flight, families named by attribute)
    still restore: an upgrade keeps its counts."""
    sim = sim_factory()
    agent = "agent-00000000-0000-4000-8000-000000000001"
    old = {
        "version": 1, "written_at": 0, "baselined": True, "agents": [agent],
        "tracker": {
            "watermark": 1_700_000_000.0, "finalised": {"run-done": 1_700_000_000.0}, "pending": [],
            "in_flight": [{"id": "run-going", "status": "running", "created_at": "2026-11-22T17:50:05Z"}],
        },
        "metrics": {
            "runs": [{"labels": [agent, "completed", "end_turn"], "value": 7}],
            "duration": [{"labels": [agent, "completed"], "buckets": [0] * 16 + [2], "sum": 9999.0}],
        },
    }  # fmt: skip
    path = tmp_path / "state.json"
    path.write_text(json.dumps(old))
    exporter = make_exporter(sim, state_file=path)
    assert exporter.tracker.in_flight == {"run-going": 1795369805.0}
    samples = served_samples(exporter)
    labels = (("agent_id", agent), ("status", "completed"), ("stop_reason", "end_turn"))
    assert samples[("letta_runs_total", labels)] == 7
    duration = (("agent_id", agent), ("status", "completed"))
    assert samples[("letta_run_duration_seconds_count", duration)] == 2
    assert samples[("letta_run_duration_seconds_sum", duration)] == 9999.0


def test_a_file_written_by_the_previous_release_restores_every_counter(sim_factory, tmp_path) -> None:
    """tests/fixtures/state-6e0cc2c.json was written by the release before the figure table and the
    steps stream (commit 6e0cc2c), from a real exporter against the simulator: 12 runs recorded, two
    in flight. Loading it resets nothing."""
    saved = json.loads((ROOT / "tests" / "fixtures" / "state-6e0cc2c.json").read_text())
    path = tmp_path / "state.json"
    path.write_text(json.dumps(saved))
    exporter = make_exporter(sim_factory(), state_file=path)
    samples = served_samples(exporter)
    assert samples[("letta_exporter_state_load_failures_total", ())] == 0
    assert runs_counted(samples) == 12
    for family, rows in saved["metrics"].items():
        for row in rows:
            if "value" in row:
                names = next(f for f in FAMILIES if f.name == family).label_names()
                labels = tuple(sorted(zip(names, row["labels"], strict=True)))
                assert samples[(f"{family}_total", labels)] == row["value"], (family, labels)
            else:
                assert sum(row["buckets"]) > 0
    assert set(exporter.tracker.in_flight) == set(saved["tracker"]["in_flight"])
    assert exporter.tracker.watermark == saved["tracker"]["watermark"]
