"""The steps stream (exporter/steps_stream.py): a few pages of Letta's global steps list a poll stand in
for one /v1/runs/{id}/steps call per run, exactly, and only where the server serves the list and it
checks out; everywhere else the steps are read per run, as exactly."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from tests.hostile_server import HostileLetta, json_reply, poll_with, run_json
from tests.support import (
    assert_matches_truth,
    make_exporter,
    poll_new_runs,
    run,
    runs_counted,
    served_samples,
    settle,
)


def requests_to(sim, suffix: str) -> int:
    return sum(1 for r in sim.requests if r.path.endswith(suffix) and r.path.startswith("/v1/runs/"))


def stream_reads(sim) -> int:
    return sum(1 for r in sim.requests if r.path.rstrip("/") == "/v1/steps")


def available(exporter, endpoint: str) -> float | None:
    return served_samples(exporter).get(("letta_exporter_endpoint_available", (("endpoint", endpoint),)))


@pytest.mark.parametrize("generation", ["spec", "cloud", "letta-0.11"])
def test_the_stream_serves_a_burst_in_a_few_pages_exactly(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, enrich_metrics=False)
        await poll_new_runs(exporter, sim, 150)
        return exporter

    exporter = run(scenario())
    assert_matches_truth(served_samples(exporter), sim.truth())
    assert available(exporter, "list_steps") == 1
    assert stream_reads(sim) <= 3
    # Per run only the sampled cross-checks: the first five the stream covered.
    assert requests_to(sim, "/steps") == 5


def test_steps_that_do_not_name_their_run_send_every_run_to_per_run_reads(sim_factory) -> None:
    """The spec lets run_id be null on steps of non-async runs: such a stream cannot say whose steps
    are whose, so the runs' steps are read per run, and the counts stay exact."""
    sim = sim_factory(step_run_id="async_only")

    async def scenario():
        exporter = make_exporter(sim, enrich_metrics=False)
        await poll_new_runs(exporter, sim, 40)
        return exporter

    exporter = run(scenario())
    assert_matches_truth(served_samples(exporter), sim.truth())
    assert available(exporter, "list_steps") == 0
    assert stream_reads(sim) == 1  # found out once; probed again only after the interval
    assert requests_to(sim, "/steps") == 40


def test_0168s_400_is_a_missing_stream_probed_once_per_interval(sim_factory) -> None:
    sim = sim_factory(generation="letta-0.16.8")

    async def scenario():
        exporter = make_exporter(sim, enrich_metrics=False, trace_probe_interval=600)
        clock = [1000.0]
        exporter.enricher.availability.clock = lambda: clock[0]
        await poll_new_runs(exporter, sim, 10)
        await poll_new_runs(exporter, sim, 10)
        assert stream_reads(sim) == 1
        clock[0] += 601
        await poll_new_runs(exporter, sim, 10)
        assert stream_reads(sim) == 2
        return exporter

    exporter = run(scenario())
    assert_matches_truth(served_samples(exporter), sim.truth())
    assert available(exporter, "list_steps") == 0


def test_runs_waiting_across_a_restart_are_covered_by_the_next_window(sim_factory, tmp_path) -> None:
    sim = sim_factory()
    state = tmp_path / "state.json"

    async def scenario():
        first = make_exporter(sim, state_file=state, enrich_metrics=False)
        await first.poller.tick()
        sim.burst(30)
        assert await asyncio.to_thread(sim.wait_idle, 10)
        # Listed and taken in, but the process stops before their steps are read.
        await first.poller.discovery.discover()
        assert len(first.tracker.pending) == 30
        await first.save_state()
        await first.client.aclose()
        second = make_exporter(sim, state_file=state, enrich_metrics=False)
        assert len(second.tracker.pending) == 30
        await settle(second, sim, expected=30)
        return second

    exporter = run(scenario())
    assert runs_counted(served_samples(exporter)) == 30
    assert_matches_truth(served_samples(exporter), sim.truth())
    assert requests_to(sim, "/steps") == 5  # the cross-checks; the rest came in the window


AGENT = "agent-00000000-0000-4000-8000-000000000001"


def step_row(step_id: str, run_id: str, status: str, prompt: int) -> dict[str, Any]:
    return {"id": step_id, "run_id": run_id, "agent_id": AGENT, "model": "gpt-4o-mini",
            "prompt_tokens": prompt, "completion_tokens": 1, "status": status,
            "stop_reason": "end_turn" if status == "success" else None}  # fmt: skip


def stream_server(global_rows, own_rows) -> HostileLetta:
    """A Letta-shaped server whose global steps list and per-run steps lists the test decides."""

    def steps_list(path: str, query: dict) -> Any:
        if query.get("after") or query.get("before"):
            return json_reply([])
        return json_reply(global_rows())

    def own_steps(path: str, query: dict) -> Any:
        return json_reply(own_rows(path.split("/")[3]))

    return HostileLetta(overrides={"/v1/steps/": steps_list, "/steps": own_steps}).start()


def drive(server: HostileLetta, runs: list[dict], polls: int, **settings: Any):
    exporter = make_exporter(server, enrich_metrics=False, **settings)
    poll_with(server, exporter, runs, polls)
    return exporter


def test_a_step_still_pending_in_the_stream_holds_its_run_back_until_it_is_final() -> None:
    """A step row exists before its step is done: a window showing it pending does not cover its
    run; the next one, with the row final, does, and only the final figures are recorded."""
    reads = [0]

    def global_rows() -> list[dict]:
        reads[0] += 1
        status = "pending" if reads[0] <= 2 else "success"
        return [step_row("step-1", "run-1", "success", 100), step_row("step-2", "run-1", status, 50)]

    server = stream_server(global_rows, lambda run_id: [])
    exporter = drive(server, [run_json("run-1")], polls=4, steps_source="stream")
    samples = served_samples(exporter)
    assert runs_counted(samples) == 1
    labels = (("agent_id", AGENT), ("type", "prompt"))
    assert samples[("letta_run_tokens_total", labels)] == 150
    assert reads[0] == 3


def test_a_stream_that_disagrees_with_a_runs_own_list_is_dropped_and_the_run_keeps_its_own() -> None:
    stream = [step_row("step-1", "run-1", "success", 100)]  # the stream leaves step-2 out
    own = [step_row("step-1", "run-1", "success", 100), step_row("step-2", "run-1", "success", 7)]
    server = stream_server(lambda: stream, lambda run_id: own)
    exporter = drive(server, [run_json("run-1")], polls=2)
    samples = served_samples(exporter)
    assert runs_counted(samples) == 1
    assert samples[("letta_run_tokens_total", (("agent_id", AGENT), ("type", "prompt")))] == 107
    assert samples[("letta_exporter_endpoint_available", (("endpoint", "list_steps"),))] == 0


def test_a_window_asks_for_the_runs_span_on_lettas_clock() -> None:
    seen: list[dict] = []

    def steps_list(path: str, query: dict) -> Any:
        seen.append(query)
        return json_reply([step_row("step-1", "run-1", "success", 10)])

    server = HostileLetta(overrides={"/v1/steps/": steps_list}).start()
    listed = run_json("run-1", created_at="2026-12-06T10:00:00.000000Z", completed_at="2026-12-06T10:00:05")
    drive(server, [listed], polls=2, steps_source="stream")
    assert seen and seen[0]["order"] == ["asc"]
    assert seen[0]["start_date"] == ["2026-12-06T09:59:59.750000+00:00"]
    assert seen[0]["end_date"] == ["2026-12-06T10:00:05.250000+00:00"]
    assert json.dumps(seen[0]).count("limit") == 1


def test_a_window_too_big_for_a_poll_narrows_to_what_fits_and_every_run_is_covered(sim_factory) -> None:
    """A backlog whose steps span more pages than a poll spends: the first window is cut off, the
    step rate it shows narrows the next ones to the oldest runs that fit, and no run is sent to
    per-run reads for it."""
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, enrich_metrics=False)
        stream = exporter.poller.stream
        stream.options = replace(stream.options, page_size=20, max_pages=10)
        await exporter.poller.tick()
        sim.set_rate(60)
        await asyncio.sleep(2.5)  # a backlog made over a few seconds, while the exporter is away
        sim.set_rate(0)
        await settle(exporter, sim)
        return exporter, stream

    exporter, stream = run(scenario())
    truth = sim.truth()
    assert len(truth) > 80
    assert_matches_truth(served_samples(exporter), truth)
    assert stream.step_rate is not None and stream.covered == len(truth)
    assert requests_to(sim, "/steps") == 5  # the cross-checks alone
    assert stream_reads(sim) > len(truth) * 2 / 200  # several windows, each at most ten pages


def test_a_burst_no_window_can_hold_is_read_per_run_after_a_few_cut_off_windows(sim_factory) -> None:
    """Runs made in the same moment share every window: when their steps cannot fit the pages a poll
    spends, narrowing cannot help, and after a few cut-off windows they are read per run."""
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, enrich_metrics=False)
        stream = exporter.poller.stream
        stream.options = replace(stream.options, page_size=20, max_pages=2)
        await poll_new_runs(exporter, sim, 60)
        return exporter, stream

    exporter, stream = run(scenario())
    assert_matches_truth(served_samples(exporter), sim.truth())
    assert stream.covered == 0
    assert requests_to(sim, "/steps") == 60
