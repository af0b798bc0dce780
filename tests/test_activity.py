"""The exporter says what it is doing at info: once when the first poll reaches Letta, then a
summary every five minutes."""

from __future__ import annotations

import asyncio
import logging
import re

from exporter.activity import ActivityLog
from tests.hostile_server import HostileLetta, json_reply, run_json
from tests.support import FakeClock, make_exporter, poll_new_runs, run, runs_counted, served_samples, ticks


def test_first_poll_line_then_a_summary_each_period(sim_factory, caplog) -> None:
    sim = sim_factory()
    sim.add_history(12, max_age_seconds=600)
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="exporter")

    async def scenario():
        exporter = make_exporter(sim)
        exporter.poller.activity = ActivityLog(exporter.metrics, exporter.tracker, exporter.client,
                                               every=300, clock=clock)  # fmt: skip
        await poll_new_runs(exporter, sim, 9)
        clock.advance(299)
        await ticks(exporter, 1)
        clock.advance(2)
        await ticks(exporter, 1)
        return exporter

    run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "exporter"]
    first = [line for line in lines if line.startswith("first poll reached Letta")]
    assert first == [f"first poll reached Letta at {sim.base_url}: 12 runs seen, 0 in flight, 3 agents"]
    summaries = [line for line in lines if line.startswith("last ")]
    assert len(summaries) == 1, lines  # not before the period is over
    assert re.match(r"last 5 min: 9 runs counted, \d+ Letta API calls \(0 answered 429\), ", summaries[0])


def test_runs_seen_finished_but_none_recorded_for_five_polls_are_said_and_shown(caplog) -> None:
    """Never a silent zero: reads that keep failing hold every finished run back; after five polls the
    exporter says so, naming why, and letta_exporter_not_recording is 1 until runs are recorded."""
    server = HostileLetta(overrides={"/steps": lambda p, q: json_reply({"detail": "boom"}, 500)}).start()
    exporter = make_exporter(server, max_retries=0)
    caplog.set_level(logging.WARNING, logger="exporter")
    stalled: list[float] = []

    async def scenario() -> None:
        await exporter.poller.tick()
        server.runs = [run_json(f"run-{n}") for n in range(3)]
        for _ in range(40):
            await exporter.poller.tick()
            stalled.append(served_samples(exporter)[("letta_exporter_not_recording", ())])
            if runs_counted(served_samples(exporter)) == 3:
                break
            await asyncio.sleep(0.1)
        await exporter.poller.tick()
        stalled.append(served_samples(exporter)[("letta_exporter_not_recording", ())])
        await exporter.client.aclose()

    try:
        run(scenario())
    finally:
        server.stop()
    assert stalled[:4] == [0.0] * 4 and 1.0 in stalled and stalled[-1] == 0.0
    said = [r.getMessage() for r in caplog.records if "no run recorded for 5 polls" in r.getMessage()]
    assert len(said) == 1 and "3 retrying failed reads (last failed read: " in said[0]
    assert any("recording runs again" in r.getMessage() for r in caplog.records)
    assert runs_counted(served_samples(exporter)) == 3  # recorded without the steps in the end
