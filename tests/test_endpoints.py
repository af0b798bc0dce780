"""A missing endpoint is not a missing run: what a 404 (or 501) from a run's sub-resource means,
learnt per endpoint (exporter/letta/availability.py), against a Letta-shaped server on loopback.

FastAPI's bare ``{"detail": "Not Found"}`` is an unknown route: the server lacks the endpoint, every
run is still recorded from the figures' next sources, the log says it once with what is lost, and
``letta_exporter_endpoint_available`` says 0. Any other 404 from a run's part is settled by asking
for the run: gone, it is lost (counted once as deleted); there, it is recorded without that part.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import pytest

from exporter.app import build_exporter
from exporter.config import Settings
from exporter.letta.availability import EndpointAvailability
from exporter.letta.models import Run
from tests.hostile_server import HostileLetta, Reply, json_reply, poll_with, run_json
from tests.support import runs_counted, select, served_samples

UNKNOWN_ROUTE = json_reply({"detail": "Not Found"}, 404)


def exporter_for(server: HostileLetta, **settings: object):
    exporter = build_exporter(
        Settings(base_url=server.base_url, max_requests_per_second=0, max_retries=0, **settings)
    )
    exporter.client.backoff_base = 0.01
    # Looks for late figures sooner than Letta needs: the same looks, shorter waits.
    exporter.enricher.options = replace(exporter.enricher.options, settle_delay=0.01)
    return exporter


def calls(server: HostileLetta, suffix: str) -> int:
    return sum(1 for path in server.requests if path.endswith(suffix))


def test_unknown_route_on_metrics_records_every_run_and_says_so_once(caplog) -> None:
    server = HostileLetta(overrides={"/metrics": lambda p, q: UNKNOWN_ROUTE}).start()
    exporter = exporter_for(server, concurrency=4)
    runs = [run_json(f"run-{n}", total_duration_ns=(n + 1) * 10**9) for n in range(8)]
    with caplog.at_level(logging.WARNING):
        poll_with(server, exporter, runs, 3)
    samples = served_samples(exporter)
    assert runs_counted(samples) == 8
    assert select(samples, "letta_exporter_runs_lost_total", ()) == {}
    assert samples[("letta_exporter_endpoint_available", (("endpoint", "retrieve_metrics_for_run"),))] == 0
    # The duration from the run itself: the figures' next source.
    assert sum(select(samples, "letta_run_duration_seconds_sum", ()).values()) == pytest.approx(36.0)
    # One read found the route missing; the other workers waited for its answer instead of asking.
    assert calls(server, "/metrics") == 1
    said = [
        r.getMessage() for r in caplog.records if "does not serve retrieve_metrics_for_run" in r.getMessage()
    ]
    assert len(said) == 1 and "tools: none" in said[0]


def test_a_run_lacking_its_row_is_recorded_without_it_and_the_endpoint_stays() -> None:
    def metrics(path: str, query: dict) -> Reply:
        run_id = path.split("/")[3]
        if run_id == "run-0":
            return json_reply({"detail": f"RunMetrics not found with id='{run_id}'"}, 404)
        return json_reply({"run_ns": 2 * 10**9, "num_steps": 1, "tools_used": ["tool-1"]})

    server = HostileLetta(overrides={"/metrics": metrics}).start()
    exporter = exporter_for(server)
    # run-0's duration waits for listings that might bring it (four), then takes the wall clock.
    poll_with(server, exporter, [run_json(f"run-{n}", total_duration_ns=None) for n in range(3)], 7)
    samples = served_samples(exporter)
    assert runs_counted(samples) == 3
    assert select(samples, "letta_exporter_runs_lost_total", ()) == {}
    assert samples[("letta_exporter_endpoint_available", (("endpoint", "retrieve_metrics_for_run"),))] == 1
    assert select(samples, "letta_run_tool_calls_total", ("tool",)) == {("tool-1",): 2.0}


def test_several_runs_in_a_row_lacking_it_make_the_endpoint_missing() -> None:
    """A server whose unknown-route 404 is not FastAPI's: told from several runs that exist."""
    gone = json_reply({"detail": "no such thing here"}, 404)
    server = HostileLetta(overrides={"/metrics": lambda p, q: gone}).start()
    exporter = exporter_for(server, concurrency=1)
    poll_with(server, exporter, [run_json(f"run-{n}") for n in range(6)], 3)
    samples = served_samples(exporter)
    assert runs_counted(samples) == 6
    assert samples[("letta_exporter_endpoint_available", (("endpoint", "retrieve_metrics_for_run"),))] == 0
    assert calls(server, "/metrics") == 3  # then no more asking per run


def test_only_a_404_for_the_run_itself_means_deleted_and_it_is_counted_once(caplog) -> None:
    server = HostileLetta(overrides={"/metrics": lambda p, q: json_reply({"detail": "Run not found"}, 404)})
    server.start()
    exporter = exporter_for(server)
    listed = [run_json("run-kept"), run_json("run-deleted")]

    def retrieve(path: str, query: dict) -> Reply:  # the run list still shows it; the run is gone
        return json_reply({"detail": "Run not found"}, 404) if "run-deleted" in path else UNKNOWN_ROUTE

    server.overrides["/v1/runs/run-deleted"] = retrieve
    with caplog.at_level(logging.WARNING):
        poll_with(server, exporter, listed, 4)
    samples = served_samples(exporter)
    assert select(samples, "letta_exporter_runs_lost_total", ("reason",)) == {("deleted",): 1.0}
    assert runs_counted(samples) == 1
    said = [r.getMessage() for r in caplog.records if "run not counted (deleted)" in r.getMessage()]
    assert len(said) == 1


def test_availability_probes_a_missing_endpoint_once_per_interval_and_sees_it_come_back() -> None:
    now = [0.0]
    changes: list[tuple[str, bool]] = []
    state = EndpointAvailability(600, on_change=lambda e, a: changes.append((e, a)), clock=lambda: now[0])

    async def scenario() -> None:
        assert await state.claim("x")  # the first asks
        waiter = asyncio.ensure_future(state.claim("x"))
        await asyncio.sleep(0)
        assert not waiter.done()  # the others wait for its answer
        state.missing("x", "404")
        assert not await waiter
        now[0] = 599
        assert not await state.claim("x")
        now[0] = 601
        assert await state.claim("x")  # the probe
        assert not await state.claim("x")  # one probe per interval
        state.answered("x")
        assert await state.claim("x")

    asyncio.run(scenario())
    assert changes == [("x", False), ("x", True)]


def test_a_pending_run_below_the_horizon_is_listed_again_and_nothing_else_there_is_taken_in() -> None:
    """On a server without /metrics the listing is the only place a run's duration is written: a
    pending run still lacking it is listed again however old, but the runs beside it, below the
    horizon, are ones the finalised set no longer covers, and are not taken in again."""
    now = time.time()

    def stamp(seconds_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - seconds_ago)) + ".000000Z"

    waiting = run_json("run-waiting", created_at=stamp(300), total_duration_ns=None)
    server = HostileLetta(overrides={"/metrics": lambda p, q: UNKNOWN_ROUTE}).start()
    exporter = exporter_for(server, discovery_overlap=5)
    tracker = exporter.tracker
    server.runs = [
        run_json("run-new", created_at=stamp(1)),
        run_json("run-old-recorded-long-ago", created_at=stamp(200)),  # pruned from the finalised set
        {**waiting, "total_duration_ns": 7 * 10**9},  # its duration is written now
    ]

    async def scenario() -> None:
        await exporter.poller.discovery.discover()  # baseline: all history
        tracker.finalised.clear()
        tracker.watermark = now - 1
        tracker.observe(Run.model_validate(waiting))
        await exporter.poller.discovery.discover()
        await exporter.client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert tracker.pending["run-waiting"].run.total_duration_ns == 7 * 10**9
    assert "run-old-recorded-long-ago" not in tracker.pending


def test_a_run_that_ended_long_before_the_newest_is_not_held_for_late_figures() -> None:
    """Letta writes a run's late figures within moments of its end: a run listed without its
    duration that ended minutes before the newest run (a backlog, 0.11's background runs after a
    restart) is recorded at once from the next source, not looked at again and again."""
    now = time.time()

    def stamp(seconds_ago: float, zone: str = "Z") -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - seconds_ago)) + ".000000" + zone

    old = run_json("run-old", created_at=stamp(125), completed_at=stamp(120, ""), total_duration_ns=None)
    server = HostileLetta(overrides={"/metrics": lambda p, q: UNKNOWN_ROUTE}).start()
    exporter = exporter_for(server)
    exporter.enricher.options = replace(exporter.enricher.options, settle_delay=60)  # a look: too late
    poll_with(server, exporter, [run_json("run-new", created_at=stamp(1)), old], 1)
    samples = served_samples(exporter)
    assert runs_counted(samples) == 2
    assert "run-old" in exporter.tracker.finalised
