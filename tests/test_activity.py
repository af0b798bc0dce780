"""The exporter says what it is doing at info: once when the first poll reaches Letta, then a
summary every five minutes."""

from __future__ import annotations

import logging
import re

from exporter.activity import ActivityLog
from tests.support import FakeClock, make_exporter, poll_new_runs, run, ticks


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
