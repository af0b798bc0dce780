"""The Letta simulator over real loopback HTTP: shapes as captured from Letta 0.16.8 and 0.11.7, the
quirks of each generation, fault injection, auth, and ground truth that agrees with what the API says.

Most tests step an injected clock instead of sleeping, so lifecycle moments (late visibility, the
write lag) are hit exactly and the file stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.letta.models import Run, RunMetrics, Step, UsageStatistics
from exporter.simulator import Faults, SimConfig, Simulator, TruthRun, TruthStep
from tests.support import QUICK, FakeClock

REAL = Path(__file__).resolve().parent / "fixtures" / "letta-real"
REAL_011 = Path(__file__).resolve().parent / "fixtures" / "letta-real-0.11.7"
ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_ID = "run-00000000-0000-4000-8000-000000000000"


@pytest.fixture
def sim_factory(sim_factory: Callable[..., Simulator]) -> Callable[..., Simulator]:
    """The suite's ``sim_factory`` (conftest.py) with this file's world: seed 3, four agents."""
    return functools.partial(sim_factory, seed=3, agents=4)


@pytest.fixture
def client_for() -> Iterator[Callable[[Simulator], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(sim: Simulator, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(base_url=sim.base_url, timeout=5.0, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def capture(name: str) -> dict[str, Any]:
    return json.loads((REAL / f"{name}.json").read_text())


def captures(pattern: str) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(REAL.glob(pattern))]


def json_type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def page_all(client: httpx.Client, *, order: str, cursor: str, limit: int) -> list[str]:
    ids: list[str] = []
    params: dict[str, Any] = {"order": order, "limit": limit}
    while True:
        page = client.get("/v1/runs/", params=params).json()
        ids.extend(run["id"] for run in page)
        if len(page) < limit:
            return ids
        params[cursor] = page[-1]["id"]


def list_steps(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/steps/", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def page_steps(client: httpx.Client, order: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of the global steps list, paged with the spec's cursor (``after``)."""
    rows: list[dict[str, Any]] = []
    query: dict[str, Any] = {"order": order, "limit": 100, **params}
    while page := list_steps(client, **query):
        rows += page
        query["after"] = page[-1]["id"]
    return rows


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


def finished(sim: Simulator, clock: FakeClock, seconds: float = 5.0) -> None:
    clock.advance(seconds)
    assert sim.wait_idle(1.0)


# -- shapes -----------------------------------------------------------------------------------------

# Keys the captures only ever show as null but the simulator sets on some runs (the brief asks for
# TTFT, callbacks, conversations and trace ids); every other key must keep the captured JSON type.
MAY_BE_SET = {
    "run": {
        "ttft_ns": {"int"},
        "conversation_id": {"str"},
        "callback_url": {"str"},
        "callback_sent_at": {"str"},
        "callback_status_code": {"int"},
        "callback_error": {"str"},
    },
    "step": {"trace_id": {"str"}, "cache_write_tokens": {"int"}},
}


def assert_same_shape(kind: str, captured: list[dict[str, Any]], simulated: list[dict[str, Any]]) -> None:
    assert captured and simulated
    keys = {tuple(body) for body in captured}
    assert len(keys) == 1, f"captures of {kind} disagree on keys"
    allowed: dict[str, set[str]] = {}
    for body in captured:
        for key, value in body.items():
            allowed.setdefault(key, set()).add(json_type(value))
    for key, types in MAY_BE_SET.get(kind, {}).items():
        allowed[key] |= types
    for body in simulated:
        assert tuple(body) == next(iter(keys)), f"{kind} keys differ (names or order)"
        for key, value in body.items():
            if allowed[key] == {"null"}:
                assert value is None, f"{kind}.{key} is always null in the captures but {value!r} here"
            else:
                # Null is fine for nullable keys: a run in flight has no completed_at yet.
                assert json_type(value) in allowed[key] | {"null"}, f"{kind}.{key}: {json_type(value)}"


def test_every_body_has_the_captured_keys_and_types(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    ids = sim.add_history(200, max_age_seconds=3600)
    client = client_for(sim)

    listed = page_all(client, order="desc", cursor="after", limit=100)  # the spec's cursor
    assert sorted(listed) == sorted(ids)
    runs = client.get("/v1/runs/", params={"limit": 1000}).json()
    retrieved = [client.get(f"/v1/runs/{run_id}").json() for run_id in ids[:60]]
    metrics = [client.get(f"/v1/runs/{run_id}/metrics").json() for run_id in ids[:60]]
    usage = [client.get(f"/v1/runs/{run_id}/usage").json() for run_id in ids[:60]]
    steps = [step for run_id in ids[:60] for step in client.get(f"/v1/runs/{run_id}/steps").json()]

    real_runs = [
        c["body"] for c in captures("run_*.json") if isinstance(c["body"], dict) and "status" in c["body"]
    ]
    real_listed = capture("list_runs_default")["body"]
    assert_same_shape("run", real_listed, runs)
    assert_same_shape("run", real_runs, retrieved)
    assert_same_shape("metrics", [c["body"] for c in captures("run_*_metrics.json")], metrics)
    assert_same_shape("usage", [c["body"] for c in captures("run_*_usage.json")], usage)
    real_steps = [step for c in captures("run_*_steps.json") for step in c["body"]]
    assert_same_shape("step", real_steps, steps)
    # Varied enough to be worth the name: the details objects appear both filled and null.
    assert {json_type(step["prompt_tokens_details"]) for step in steps} == {"dict", "null"}
    assert {step["status"] for step in steps} >= {"success", "failed"}

    # Every body parses with the exporter's own models.
    for body in runs + retrieved:
        Run.model_validate(body)
    for body in metrics:
        RunMetrics.model_validate(body)
    for body in usage:
        UsageStatistics.model_validate(body)
    for body in steps:
        Step.model_validate(body)


def test_timestamps_and_durations_carry_the_real_quirks(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    sim.burst(30)
    finished(sim, clock)
    client = client_for(sim)
    listed = {run["id"]: run for run in client.get("/v1/runs/").json()}
    truth = {run.id: run for run in sim.truth()}
    assert listed.keys() == truth.keys()
    for run_id, body in listed.items():
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["created_at"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", body["completed_at"]), "naive, no zone"
        parsed = Run.model_validate(body)
        assert parsed.completed_at is not None and parsed.created_at is not None
        wall_ns = (parsed.completed_at - parsed.created_at) // timedelta(microseconds=1) * 1000
        # Listed duration is run_ns, tens of ms away from the wall clock difference.
        assert body["total_duration_ns"] == truth[run_id].total_duration_ns
        assert 15e6 <= body["total_duration_ns"] - wall_ns <= 85e6
        assert parsed.completed_at == truth[run_id].completed_at
        assert parsed.created_at == truth[run_id].created_at
        # Retrieve leaves total_duration_ns null (only the list joins run_metrics).
        assert client.get(f"/v1/runs/{run_id}").json()["total_duration_ns"] is None


# -- lifecycle ---------------------------------------------------------------------------------------


def test_status_moves_from_created_to_running_to_terminal(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, duration_range=(1.0, 1.0))
    (run_id,) = sim.burst(1)
    client = client_for(sim)
    seen = []
    for _ in range(4):
        body = client.get(f"/v1/runs/{run_id}").json()
        seen.append((body["status"], body["completed_at"], body["stop_reason"]))
        clock.advance(0.04)
    assert seen[0] == ("created", None, None)
    assert seen[-1] == ("running", None, None)
    active = {run["id"] for run in client.get("/v1/runs/active").json()}
    also_active = {run["id"] for run in client.get("/v1/runs/", params={"active": "true"}).json()}
    by_status = client.get("/v1/runs/", params=[("statuses", "created"), ("statuses", "running")]).json()
    assert active == also_active == {run["id"] for run in by_status} == {run_id}
    clock.advance(1.0)
    body = client.get(f"/v1/runs/{run_id}").json()
    assert body["status"] in {"completed", "failed", "cancelled"} and body["completed_at"]
    assert client.get("/v1/runs/active").json() == []
    assert client.get(f"/v1/runs/{run_id}/usage").json()["total_tokens"] >= 0


def test_runs_become_visible_late_and_out_of_created_at_order(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, late_visibility_fraction=0.5, late_visibility_max=1.0)
    ids = sim.burst(40)
    clock.advance(0.01)
    ids += sim.burst(40)
    client = client_for(sim)
    visible = {run["id"] for run in client.get("/v1/runs/", params={"limit": 1000}).json()}
    hidden = [run_id for run_id in ids if run_id not in visible]
    assert 20 <= len(hidden) <= 60
    # Not a prefix: some run created earlier is hidden while one created later is listed.
    first_batch_hidden = any(run_id in hidden for run_id in ids[:40])
    second_batch_shown = any(run_id in visible for run_id in ids[40:])
    assert first_batch_hidden and second_batch_shown
    # Invisible to every lookup, cursors included, until committed; so are its step rows.
    assert client.get(f"/v1/runs/{hidden[0]}").status_code == 404
    assert {row["run_id"] for row in list_steps(client, limit=1000)} <= visible
    before_hidden = client.get("/v1/runs/", params={"before": hidden[0], "limit": 1000}).json()
    assert len(before_hidden) == len(visible), "an invisible cursor is ignored"
    clock.advance(1.0)
    visible = {run["id"] for run in client.get("/v1/runs/", params={"limit": 1000}).json()}
    assert visible == set(ids)


def test_terminal_runs_are_listed_before_their_duration_is_written(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, duration_range=(0.2, 0.2), write_lag_fraction=1.0, write_lag_max=0.5)
    ids = sim.burst(5)
    client = client_for(sim)
    clock.advance(0.2001)
    for run in client.get("/v1/runs/").json():
        assert run["status"] in {"completed", "failed", "cancelled"}
        assert run["total_duration_ns"] is None
        metrics = client.get(f"/v1/runs/{run['id']}/metrics").json()
        assert metrics["run_ns"] is None and metrics["num_steps"] == 0
    assert not sim.wait_idle(0.05), "not idle while metrics are unwritten"
    clock.advance(0.5)
    assert sim.wait_idle(1.0)
    truth = {run.id: run for run in sim.truth()}
    assert truth.keys() == set(ids)
    for run in client.get("/v1/runs/").json():
        assert run["total_duration_ns"] == truth[run["id"]].total_duration_ns
        metrics = client.get(f"/v1/runs/{run['id']}/metrics").json()
        assert metrics["run_ns"] == truth[run["id"]].total_duration_ns
        assert metrics["num_steps"] == truth[run["id"]].num_steps


def test_stuck_runs_stay_running_until_released(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    stuck = sim.add_stuck(3)
    clock.advance(60)
    client = client_for(sim)
    assert {run["id"]: run["status"] for run in client.get("/v1/runs/active").json()} == dict.fromkeys(
        stuck, "running"
    )
    assert not sim.wait_idle(0.05)
    assert sim.truth() == []
    # Each is stuck in its first step: one row, pending, listed globally too.
    waiting = {run_id: client.get(f"/v1/runs/{run_id}/steps").json() for run_id in stuck}
    assert all([row["status"] for row in rows] == ["pending"] for rows in waiting.values())
    listed = {row["id"]: row["status"] for row in list_steps(client, limit=1000)}
    assert listed == {rows[0]["id"]: "pending" for rows in waiting.values()}
    sim.release_stuck()
    clock.advance(0.1)
    assert sim.wait_idle(1.0)
    assert {run.id for run in sim.truth()} == set(stuck)
    assert client.get("/v1/runs/active").json() == []
    for run in sim.truth():
        rows = client.get(f"/v1/runs/{run.id}/steps", params={"order": "asc"}).json()
        assert [row["id"] for row in rows] == [step.id for step in run.steps]
        assert rows[0]["id"] == waiting[run.id][0]["id"] and "pending" not in {row["status"] for row in rows}


def test_deleted_runs_answer_404_and_leave_truth(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    ids = sim.burst(4)
    finished(sim, clock)
    gone = ids[1]
    truth_before = sim.truth()
    outcome = next((run.status, run.stop_reason) for run in truth_before if run.id == gone)
    before = sim.truth_totals()
    sim.delete_run(gone)
    client = client_for(sim)
    assert client.get(f"/v1/runs/{gone}").status_code == 404
    assert client.get(f"/v1/runs/{gone}/metrics").json()["detail"].startswith("RunMetrics not found")
    assert gone not in {run["id"] for run in client.get("/v1/runs/").json()}
    assert gone not in {run.id for run in sim.truth()}
    # Its step rows leave the global list with it.
    assert {row["run_id"] for row in list_steps(client, limit=1000)} == {
        run.id for run in sim.truth() if run.steps
    }
    assert gone in {run.id for run in truth_before if run.steps}
    after = sim.truth_totals()
    assert after.get(outcome, 0) == before[outcome] - 1


def test_generated_runs_follow_the_rate_and_finish(sim_factory) -> None:
    sim = sim_factory(runs_per_second=100, duration_range=(0.02, 0.05))
    time.sleep(0.3)
    sim.set_rate(0)
    assert sim.wait_idle(5.0)
    count = len(sim.truth())
    assert 10 <= count <= 60  # Poisson(30)
    time.sleep(0.1)
    assert len(sim.truth()) == count, "rate 0 stops new runs"


def test_max_runs_bounds_generation_and_truth_says_when_it_is_done(sim_factory, client_for) -> None:
    """A workload of a fixed size, with its truth over HTTP: what a test uses when the simulator runs
    where only its port can be reached (tests/test_k8s_live.py runs it in a pod)."""
    sim = sim_factory(runs_per_second=200, duration_range=(0.02, 0.05), max_runs=25)
    client = client_for(sim)
    deadline = time.monotonic() + 10
    while not (summary := client.get("/_simulator/truth").json())["done"]:
        assert time.monotonic() < deadline, summary
        time.sleep(0.05)
    assert summary["usage"]["runs"] == len(sim.truth()) == 25
    totals = {(o["status"], o["stop_reason"]): o["runs"] for o in summary["by_outcome"]}
    assert totals == sim.truth_totals()
    # Each outcome again, with the stop reason the runs' steps record: the same runs in all.
    with_steps = Counter()
    for o in summary["by_outcome_and_steps"]:
        with_steps[(o["status"], o["stop_reason"])] += o["runs"]
        if o["stop_reason"] is None and o["status"] == "failed" and o["steps_stop_reason"] is not None:
            assert o["steps_stop_reason"] in ("error", "llm_api_error")
    assert dict(with_steps) == sim.truth_totals()
    assert summary["usage"] == sim.truth_usage_totals()
    sim.set_rate(200)  # the bound holds across a new rate too
    time.sleep(0.2)
    assert client.get("/_simulator/truth").json()["usage"]["runs"] == 25


# -- pagination ---------------------------------------------------------------------------------------


# What each cursor returns, as docs/architecture.md ("Paging") records it from the facts: the
# published spec (and Letta Cloud) read cursors relative to the sort order; Letta 0.16.8's run list
# reads them the other way round in every order; its steps list as the spec.
SPEC_SIDES = {("asc", "after"): "newer", ("asc", "before"): "older",
              ("desc", "after"): "older", ("desc", "before"): "newer"}  # fmt: skip
REVERSED_SIDES = {key: "older" if side == "newer" else "newer" for key, side in SPEC_SIDES.items()}
RUN_LIST_SIDES = {"spec": SPEC_SIDES, "letta-0.16.8": REVERSED_SIDES}


@pytest.mark.parametrize("generation", ["spec", "letta-0.16.8"])
def test_run_list_cursors_mean_what_the_server_they_stand_for_says(
    sim_factory, client_for, clock, generation
):
    sim = sim_factory(clock, generation=generation)
    sim.add_history(9, max_age_seconds=100)
    client = client_for(sim)
    oldest_first = [run["id"] for run in client.get("/v1/runs/", params={"order": "asc"}).json()]
    pivot = 4
    for (order, param), side in RUN_LIST_SIDES[generation].items():
        query = {"order": order, param: oldest_first[pivot], "limit": 1000}
        got = [run["id"] for run in client.get("/v1/runs/", params=query).json()]
        expected = oldest_first[pivot + 1 :] if side == "newer" else oldest_first[:pivot]
        assert got == (expected if order == "asc" else expected[::-1]), (order, param)


def test_the_0168_run_list_reproduces_the_captured_asc_after_answer(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, generation="letta-0.16.8")
    sim.add_history(10, max_age_seconds=100)
    client = client_for(sim)
    oldest_first = [run["id"] for run in client.get("/v1/runs/", params={"order": "asc"}).json()]
    # list_runs_after.json: order=asc&after=<oldest> came back empty on the real server.
    assert client.get("/v1/runs/", params={"order": "asc", "after": oldest_first[0]}).json() == []


@pytest.mark.parametrize("generation", ["spec", "letta-0.16.8"])
def test_steps_list_cursors_follow_the_spec_on_both(sim_factory, client_for, clock, generation) -> None:
    sim = sim_factory(clock, generation=generation)
    sim.add_history(40, max_age_seconds=100)
    client = client_for(sim)
    runs = client.get("/v1/runs/", params={"limit": 1000}).json()
    steps = []
    for run in runs:
        steps = [
            step["id"] for step in client.get(f"/v1/runs/{run['id']}/steps", params={"order": "asc"}).json()
        ]
        if len(steps) >= 3:
            break
    assert len(steps) >= 3, "a run with three steps"
    run_id = run["id"]
    for (order, param), side in SPEC_SIDES.items():
        query = {"order": order, param: steps[1]}
        got = [step["id"] for step in client.get(f"/v1/runs/{run_id}/steps", params=query).json()]
        expected = steps[2:] if side == "newer" else steps[:1]
        assert got == (expected if order == "asc" else expected[::-1]), (order, param)


@pytest.mark.parametrize("generation", ["spec", "letta-0.16.8"])
def test_paging_a_burst_returns_every_run_exactly_once(sim_factory, client_for, clock, generation) -> None:
    sim = sim_factory(clock, generation=generation)
    ids = sim.burst(130)  # one created_at for all: ordering falls back to the id
    finished(sim, clock)
    client = client_for(sim)
    sides = RUN_LIST_SIDES[generation]
    older = next(param for (order, param), side in sides.items() if order == "desc" and side == "older")
    newer = next(param for (order, param), side in sides.items() if order == "asc" and side == "newer")
    newest_first = page_all(client, order="desc", cursor=older, limit=40)
    oldest_first = page_all(client, order="asc", cursor=newer, limit=40)
    assert sorted(newest_first) == sorted(ids) and len(newest_first) == len(ids)
    assert oldest_first == list(reversed(newest_first))
    # An unknown cursor is ignored, as if absent (Letta looks the row up and skips the filter).
    assert client.get("/v1/runs/", params={"before": UNKNOWN_ID}).json() == client.get("/v1/runs/").json()


def test_filters(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    sim.add_history(300, max_age_seconds=600)
    truth = sim.truth()
    client = client_for(sim)

    def ids(**params: Any) -> set[str]:
        return {run["id"] for run in client.get("/v1/runs/", params={"limit": 1000, **params}).json()}

    agent = truth[0].agent_id
    assert ids(agent_id=agent) == {run.id for run in truth if run.agent_id == agent}
    assert ids(statuses="failed") == {run.id for run in truth if run.status == "failed"}
    assert ids(stop_reason="llm_api_error") == {run.id for run in truth if run.stop_reason == "llm_api_error"}
    background = {
        run["id"] for run in client.get("/v1/runs/", params={"limit": 1000}).json() if run["background"]
    }
    assert background and ids(background="true") == background
    assert ids(background="false") == {run.id for run in truth} - background
    assert ids(statuses="running") == set()


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["bad_limit0", "bad_limit5000", "bad_order_sideways", "bad_stop_reason_bogus", "bad_statuses_bogus"],
)
def test_bad_queries_answer_exactly_as_captured(sim_factory, client_for, name) -> None:
    real = capture(name)
    response = client_for(sim_factory()).get(real["path"], params=real["query"])
    assert response.status_code == real["status"]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == real["body"]


@pytest.mark.parametrize(
    "name", ["unknown_run", "unknown_run_metrics", "unknown_run_usage", "unknown_run_steps"]
)
def test_unknown_runs_answer_404_exactly_as_captured(sim_factory, client_for, name) -> None:
    real = capture(name)
    response = client_for(sim_factory()).get(real["path"])
    assert (response.status_code, response.json()) == (404, real["body"])


def test_trace_is_501_for_every_run(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    (run_id,) = sim.burst(1)
    finished(sim, clock)
    client = client_for(sim)
    real = capture("unknown_run_trace")
    for path in (real["path"], f"/v1/runs/{run_id}/trace"):
        response = client.get(path, params={"limit": 1000})
        assert (response.status_code, response.json()) == (501, real["body"])


def test_other_methods_get_405_and_are_recorded(sim_factory, client_for) -> None:
    sim = sim_factory()
    client = client_for(sim)
    for method in ("POST", "DELETE", "PATCH"):
        response = client.request(method, "/v1/runs/", content=b"{}")
        assert response.status_code == 405
        assert response.json() == {"detail": "Method Not Allowed"}
    assert client.get("/v1/health/").json() == {"version": "0.16.8", "status": "ok"}
    assert [(r.method, r.path) for r in sim.requests] == [
        ("POST", "/v1/runs/"),
        ("DELETE", "/v1/runs/"),
        ("PATCH", "/v1/runs/"),
        ("GET", "/v1/health/"),
    ]


def test_agents(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    sim.burst(20)
    finished(sim, clock)
    client = client_for(sim)
    agent_ids = {run.agent_id for run in sim.truth()}
    names = set()
    for agent_id in agent_ids:
        body = client.get(f"/v1/agents/{agent_id}").json()
        assert body["id"] == agent_id and body["agent_type"] == "letta_v1_agent"
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*-\d+", body["name"])
        names.add(body["name"])
    assert len(names) == len(agent_ids)
    assert client.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000").status_code == 404


# -- faults and auth --------------------------------------------------------------------------------


def test_faults_fire_and_can_be_changed_while_running(sim_factory, client_for) -> None:
    sim = sim_factory(faults=Faults(rate_429=1.0, retry_after=0.25))
    client = client_for(sim)
    for _ in range(10):
        response = client.get("/v1/runs/")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "0.25"
        assert "detail" in response.json()
    sim.faults.rate_429 = 0.0
    sim.faults.rate_502 = 1.0
    response = client.get("/v1/runs/")
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    sim.faults.rate_502 = 0.0
    sim.faults.rate_500 = 1.0
    assert client.get("/v1/runs/").status_code == 500
    sim.faults.rate_500 = 0.0
    sim.faults.rate_malformed = 1.0
    response = client.get("/v1/health/")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    sim.faults.rate_malformed = 0.0
    sim.faults.rate_slow, sim.faults.slow_seconds = 1.0, 0.3
    started = time.monotonic()
    assert client.get("/v1/health/").status_code == 200
    assert time.monotonic() - started >= 0.3
    sim.faults.rate_slow = 0.0
    assert client.get("/v1/runs/").status_code == 200


def test_fault_rates_are_honoured(sim_factory, client_for) -> None:
    sim = sim_factory(faults=Faults(rate_429=0.2, rate_500=0.1, rate_502=0.1))
    client = client_for(sim)
    codes = Counter(client.get("/v1/health/").status_code for _ in range(400))
    assert 50 <= codes[429] <= 110
    assert 20 <= codes[500] <= 65
    assert 20 <= codes[502] <= 65
    assert codes[200] == 400 - codes[429] - codes[500] - codes[502]
    # Only the API is faulted.
    assert client.get("/").status_code == 404


def test_api_key_is_required_when_set(sim_factory, client_for) -> None:
    sim = sim_factory(api_key="s3cret")
    assert client_for(sim).get("/v1/runs/").status_code == 401
    wrong = client_for(sim, headers={"Authorization": "Bearer nope"})
    assert wrong.get("/v1/runs/").status_code == 401
    right = client_for(sim, headers={"Authorization": "Bearer s3cret"})
    assert right.get("/v1/runs/").status_code == 200
    assert sim.requests[-1].headers["authorization"] == "Bearer s3cret"


# -- ground truth --------------------------------------------------------------------------------------


def test_truth_matches_what_the_api_reports(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, late_visibility_fraction=0.3, write_lag_fraction=0.5)
    sim.burst(60)
    sim.add_history(60, max_age_seconds=300)
    finished(sim, clock)
    client = client_for(sim)
    truth = sim.truth()
    assert len(truth) == 120
    assert [run.created_at for run in truth] == sorted(run.created_at for run in truth)
    listed = {
        run["id"]: Run.model_validate(run) for run in client.get("/v1/runs/", params={"limit": 1000}).json()
    }
    assert listed.keys() == {run.id for run in truth}
    for run in truth:
        api = listed[run.id]
        assert (api.status, api.stop_reason, api.agent_id) == (run.status, run.stop_reason, run.agent_id)
        assert (api.ttft_ns, api.total_duration_ns) == (run.ttft_ns, run.total_duration_ns)
        assert (api.callback_url, api.callback_status_code, api.callback_error) == (
            run.callback_url,
            run.callback_status_code,
            run.callback_error,
        )
        assert_enrichment_matches(client, run)


def assert_enrichment_matches(client: httpx.Client, run: TruthRun) -> None:
    metrics = RunMetrics.model_validate(client.get(f"/v1/runs/{run.id}/metrics").json())
    assert metrics.run_ns == run.total_duration_ns
    assert metrics.num_steps == run.num_steps == len(run.steps)
    assert (metrics.tools_used or []) == run.tools_used
    usage = UsageStatistics.model_validate(client.get(f"/v1/runs/{run.id}/usage").json())
    assert usage.prompt_tokens == sum(step.prompt_tokens for step in run.steps)
    assert usage.completion_tokens == sum(step.completion_tokens for step in run.steps)
    steps = [Step.model_validate(s) for s in client.get(f"/v1/runs/{run.id}/steps?order=asc").json()]
    assert [step.id for step in steps] == [step.id for step in run.steps]
    for api, true in zip(steps, run.steps, strict=True):
        details = api.prompt_tokens_details
        completion_details = api.completion_tokens_details
        assert (api.model, api.provider_name, api.status, api.stop_reason, api.trace_id) == (
            true.model,
            true.provider_name,
            true.status,
            true.stop_reason,
            true.trace_id,
        )
        assert api.model_handle == f"{true.provider_name}/{true.model}"
        assert (api.prompt_tokens, api.completion_tokens) == (true.prompt_tokens, true.completion_tokens)
        assert ((details.cached_tokens if details else None) or 0) == true.cached_tokens
        assert ((details.cache_read_tokens if details else None) or 0) == true.cache_read_tokens
        assert ((details.cache_creation_tokens if details else None) or 0) == true.cache_creation_tokens
        assert ((completion_details.reasoning_tokens if completion_details else None) or 0) == (
            true.reasoning_tokens
        )
    if run.steps:
        assert run.steps[-1].stop_reason == (run.stop_reason or "error")
        assert len({step.trace_id for step in run.steps}) == 1


def test_steps_paginate_with_step_cursors(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    sim.add_history(60, max_age_seconds=60)
    run = max(sim.truth(), key=lambda r: r.num_steps)
    assert run.num_steps >= 4
    client = client_for(sim)
    path = f"/v1/runs/{run.id}/steps"
    expected = [step.id for step in run.steps]
    assert [s["id"] for s in client.get(path).json()] == list(reversed(expected)), "default order is desc"
    paged: list[str] = []
    params: dict[str, Any] = {"order": "asc", "limit": 2}
    while page := client.get(path, params=params).json():
        paged += [s["id"] for s in page]
        params["after"] = page[-1]["id"]
    assert paged == expected
    before_last = client.get(path, params={"before": expected[-1], "order": "asc"}).json()
    assert [s["id"] for s in before_last] == expected[:-1]


def test_outcome_mix_is_realistic(sim_factory, clock) -> None:
    sim = sim_factory(clock, unknown_stop_reason_fraction=0.05)
    sim.add_history(3000, max_age_seconds=3600)
    truth = sim.truth()
    outcomes = Counter((run.status, run.stop_reason) for run in truth)
    share = {outcome: count / len(truth) for outcome, count in outcomes.items()}
    assert 0.66 <= share[("completed", "end_turn")] <= 0.75
    assert 0.06 <= share[("failed", "llm_api_error")] <= 0.10
    assert 0.02 <= share[("failed", None)] <= 0.06
    assert 0.01 <= share[("cancelled", "cancelled")] <= 0.05
    unknown = sum(
        n for (status, reason), n in outcomes.items() if status == "failed" and reason == "quota_exhausted"
    )
    assert unknown > 0
    assert 0.33 <= sum(run.ttft_ns is None for run in truth) / len(truth) <= 0.5
    assert all(run.ttft_ns is None or 0 < run.ttft_ns < run.total_duration_ns for run in truth)
    max_steps = [run.num_steps for run in truth if run.stop_reason == "max_steps"]
    others = [run.num_steps for run in truth if run.stop_reason == "end_turn"]
    assert min(max_steps) > max(others) == 6 and min(others) == 1
    steps = [step for run in truth for step in run.steps]
    assert {step.model for step in steps} == {"gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"}
    assert any(step.cached_tokens for step in steps) and any(step.reasoning_tokens for step in steps)
    assert any(step.cache_creation_tokens for step in steps)
    assert 0.4 <= sum(run.steps[0].trace_id is not None for run in truth if run.steps) / len(truth) <= 0.6
    callbacks = Counter(
        (run.callback_status_code, run.callback_error is not None) for run in truth if run.callback_url
    )
    assert callbacks[(200, False)] and callbacks[(500, False)] and callbacks[(None, True)]
    assert sum(callbacks.values()) / len(truth) == pytest.approx(0.1, abs=0.03)
    usage = sim.truth_usage_totals()
    assert usage["runs"] == len(truth)
    assert usage["prompt_tokens"] == sum(step.prompt_tokens for step in steps)


def test_same_seed_same_world() -> None:
    def world_ids(seed: int) -> list[tuple[str, str, str | None, int]]:
        clock = FakeClock()
        sim = Simulator(SimConfig(seed=seed, **QUICK), clock=clock)  # never started: no server needed
        sim.burst(20)
        sim.add_history(20, 100)
        clock.advance(5)
        return [(run.id, run.status, run.stop_reason, run.total_duration_ns) for run in sim.truth()]

    assert world_ids(1) == world_ids(1)
    assert world_ids(1) != world_ids(2)


def test_retention_bounds_memory_while_totals_keep_counting(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, runs_per_second=200, retention_seconds=2.0)
    sizes = []
    for _ in range(100):  # 10 s of simulated time
        clock.advance(0.1)
        sizes.append(sim.world_size())
    totals = sum(sim.truth_totals().values())
    assert max(sizes) < 200 * (2.0 + 1.5)
    assert totals > 1600  # about 2000 runs finished, most of them pruned by now
    assert totals > 3 * sizes[-1]
    assert sim.truth_usage_totals()["runs"] == totals
    # A pruned run is gone from the API as well, its step rows with it.
    client = client_for(sim)
    oldest = client.get("/v1/runs/", params={"order": "asc", "limit": 1}).json()[0]
    assert Run.model_validate(oldest).created_at.timestamp() >= clock.now - 3.5
    listed = {run["id"] for run in client.get("/v1/runs/", params={"limit": 1000}).json()}
    rows = page_steps(client, "asc")
    assert rows and {row["run_id"] for row in rows} <= listed
    assert len(rows) < 200 * 3.5 * 10  # bounded like the runs (at most ten steps a run)


def test_stop_closes_even_kept_alive_connections(sim_factory, client_for) -> None:
    sim = sim_factory()
    client = client_for(sim)
    assert client.get("/v1/health/").status_code == 200
    sim.stop()
    with pytest.raises(httpx.TransportError):
        client.get("/v1/health/")


def test_cli_serves_until_sigterm() -> None:
    args = ["--port", "0", "--rate", "5", "--rate-429", "0", "--generation", "letta-0.11"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert httpx.get(f"{base_url}/v1/health/", timeout=5).json()["version"] == "0.11.7"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- /trace with trace storage ---------------------------------------------------------------------

OTEL_COLUMNS = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
    "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode",
    "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId", "Links.SpanId",
    "Links.TraceState", "Links.Attributes",
)  # fmt: skip


def test_trace_rows_are_shaped_like_clickhouse_otel_traces(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, trace_mode="rows")
    sim.burst(60)
    finished(sim, clock)
    client = client_for(sim)
    truth = sim.truth()
    traced = [run for run in truth if run.trace_rows]
    assert 0.3 < len(traced) / len(truth) < 0.7  # runs whose steps carry a trace_id
    rows: list[dict[str, Any]] = []
    for run in truth:
        body = client.get(f"/v1/runs/{run.id}/trace", params={"limit": 1000}).json()
        assert body == list(run.trace_rows)
        assert bool(body) == any(step.trace_id for step in run.steps)
        rows += body
        ids = {row["SpanId"].lower() for row in body}
        for row, span in zip(body, run.trace_spans, strict=True):
            assert row["TraceId"].lower() == run.steps[0].trace_id == span.trace_id
            assert (row["ParentSpanId"].lower() not in ids) == (span.hidden_parent or not span.parent_span_id)
        if body:
            assert sum(1 for row in body if row["ParentSpanId"] == "") == 1
            assert sum(row["SpanName"] == "agent_step" for row in body) == run.num_steps
            assert any(row["SpanName"] == "time_to_first_token" for row in body) == (run.ttft_ns is not None)
    for row in rows:
        assert tuple(row) == OTEL_COLUMNS
        assert all(isinstance(v, str) for v in row["SpanAttributes"].values())  # Map(String, String)
        assert len({len(row[f"Events.{c}"]) for c in ("Timestamp", "Name", "Attributes")}) == 1
        assert len({len(row[f"Links.{c}"]) for c in ("TraceId", "SpanId", "TraceState", "Attributes")}) == 1
    names = {row["SpanName"] for row in rows}
    assert {"agent_step", "LettaAgentV3._execute_tool", "time_to_first_token"} <= names
    assert any(name.startswith("POST /v1/agents/") for name in names)
    keys = {key for row in rows for key in row["SpanAttributes"]}
    assert {"http.request.body.messages", "parameter.agent_state", "parameter.tool_args"} <= keys
    assert any(row["Links.SpanId"] for row in rows) and any(row["Events.Name"] for row in rows)
    ttft_events = [
        attributes
        for row in rows
        for name, attributes in zip(row["Events.Name"], row["Events.Attributes"], strict=True)
        if name == "time_to_first_token_ms"
    ]
    assert ttft_events and all(a["ttft_ms"].isdigit() for a in ttft_events)
    assert any(row["StatusCode"] == "Error" for row in rows)
    # Dialects are mixed: integer and ISO timestamps, upper- and lower-case IDs, quoted durations.
    assert {type(row["Timestamp"]).__name__ for row in rows} == {"int", "str"}
    assert any(" " in str(row["Timestamp"]) for row in rows) and any(
        "T" in str(row["Timestamp"]) for row in rows
    )
    assert any(row["SpanId"].isupper() for row in rows) and any(row["SpanId"].islower() for row in rows)
    assert {type(row["Duration"]).__name__ for row in rows} == {"int", "str"}

    run = max(traced, key=lambda r: len(r.trace_rows))
    limited = client.get(f"/v1/runs/{run.id}/trace", params={"limit": 2}).json()
    assert limited == list(run.trace_rows[:2])
    assert client.get(f"/v1/runs/{UNKNOWN_ID}/trace").status_code == 404


def test_trace_rows_are_empty_in_flight_and_in_empty_mode(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, trace_mode="rows")
    (run_id,) = sim.add_stuck(1)
    client = client_for(sim)
    assert client.get(f"/v1/runs/{run_id}/trace").json() == []
    empty = sim_factory(clock, trace_mode="empty")
    empty.burst(10)
    finished(empty, clock)
    client = client_for(empty)
    for run in empty.truth():
        assert client.get(f"/v1/runs/{run.id}/trace").json() == []
        assert run.trace_rows == ()


def test_ttft_can_live_in_the_trace_only(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, trace_mode="rows", ttft_in_trace_only=True)
    sim.burst(40)
    finished(sim, clock)
    client = client_for(sim)
    assert all(run["ttft_ns"] is None for run in client.get("/v1/runs/").json())
    truth = [run for run in sim.truth() if run.ttft_ns is not None and run.trace_rows]
    assert truth
    for run in truth:
        (ttft,) = [row for row in run.trace_rows if row["SpanName"] == "time_to_first_token"]
        assert ttft["Events.Attributes"] == [{"ttft_ms": str(run.ttft_ns // 1_000_000)}]
        assert run.ttft_ns % 1_000_000 == 0  # truth knows it as the trace does: in whole ms


def test_trace_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="trace_mode"):
        SimConfig(trace_mode="clickhouse")


# -- the global steps list (GET /v1/steps/) -----------------------------------------------------------


def steps_in_order(truth: list[TruthRun]) -> list[TruthStep]:
    """Every step row, oldest first: by (created_at, id), as Letta's ORM sorts them."""
    return sorted((step for run in truth for step in run.steps), key=lambda step: (step.created_at, step.id))


UNKNOWN_STEP = "step-00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("generation", ["spec", "cloud"])
def test_steps_list_pages_every_row_in_creation_order(sim_factory, client_for, clock, generation) -> None:
    sim = sim_factory(clock, generation=generation)
    sim.add_history(80, max_age_seconds=600)
    client = client_for(sim)
    oldest_first = [step.id for step in steps_in_order(sim.truth())]
    assert len(oldest_first) > 150
    assert ids(list_steps(client)) == oldest_first[::-1][:50], "newest first, 50, by default"
    assert ids(page_steps(client, "asc")) == oldest_first
    assert ids(page_steps(client, "desc")) == oldest_first[::-1]
    assert len(list_steps(client, limit=1000)) == len(oldest_first)
    # The spec's cursors: relative to the sort order.
    pivot = 70
    for (order, param), side in SPEC_SIDES.items():
        got = ids(list_steps(client, order=order, limit=1000, **{param: oldest_first[pivot]}))
        expected = oldest_first[pivot + 1 :] if side == "newer" else oldest_first[:pivot]
        assert got == (expected if order == "asc" else expected[::-1]), (order, param)
    response = client.get("/v1/steps/", params={"after": UNKNOWN_STEP})
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"No Step found with id {UNKNOWN_STEP}"},
    )
    # The spec's Step has no created_at; the rows are the captured 0.16.8 rows, key for key.
    real_keys = tuple(capture("run_completed_end_turn_073f7574_steps")["body"][0])
    assert "created_at" not in real_keys
    assert {tuple(row) for row in list_steps(client, limit=1000)} == {real_keys}


def test_steps_list_dates_are_strict_bounds_and_filters_apply(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock)
    sim.add_history(60, max_age_seconds=600)
    client = client_for(sim)
    truth = sim.truth()
    rows = steps_in_order(truth)
    first, last = rows[10], rows[50]

    def window(start: datetime, end: datetime, **params: Any) -> list[str]:
        return ids(list_steps(client, order="asc", limit=1000, start_date=start.isoformat(),
                              end_date=end.isoformat(), **params))  # fmt: skip

    # Strictly after start_date and strictly before end_date, as Letta's ORM filters created_at.
    assert window(first.created_at, last.created_at) == [step.id for step in rows[11:50]]
    micro = timedelta(microseconds=1)
    assert window(first.created_at - micro, last.created_at + micro) == [step.id for step in rows[10:51]]
    # The same moments in another zone (the "+" goes percent-encoded, as httpx sends it).
    pacific = timezone(timedelta(hours=-8))
    assert window(first.created_at.astimezone(pacific), last.created_at.astimezone(pacific)) == [
        step.id for step in rows[11:50]
    ]
    agent = truth[0].agent_id
    by_agent = {step.id for run in truth if run.agent_id == agent for step in run.steps}
    assert set(ids(list_steps(client, agent_id=agent, limit=1000))) == by_agent
    model = rows[0].model
    assert set(ids(list_steps(client, model=model, limit=1000))) == {s.id for s in rows if s.model == model}
    naive = first.created_at.replace(tzinfo=None).isoformat()
    for query, status in (
        ({"start_date": naive}, 422),
        ({"end_date": "yesterday"}, 422),
        ({"limit": "many"}, 422),
        ({"order": "sideways"}, 422),
        ({"start_date": last.created_at.isoformat(), "end_date": first.created_at.isoformat()}, 400),
    ):
        assert client.get("/v1/steps/", params=query).status_code == status, query


def test_step_run_id_can_be_left_to_background_runs(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, step_run_id="async_only")
    sim.add_history(300, max_age_seconds=600)
    client = client_for(sim)
    background = {
        run["id"] for run in client.get("/v1/runs/", params={"limit": 1000}).json() if run["background"]
    }
    owner = {step.id: run.id for run in sim.truth() for step in run.steps}
    rows = page_steps(client, "asc")
    assert len(rows) == len(owner)
    expected = {step_id: run_id if run_id in background else None for step_id, run_id in owner.items()}
    assert {row["id"]: row["run_id"] for row in rows} == expected
    assert None in expected.values() and set(expected.values()) - {None}
    for run_id in background:
        assert all(row["run_id"] == run_id for row in client.get(f"/v1/runs/{run_id}/steps").json())
    # By default every row names its run (0.16.8 fills it for ordinary runs too).
    always = sim_factory(clock)
    always.add_history(30, max_age_seconds=600)
    owner = {step.id: run.id for run in always.truth() for step in run.steps}
    assert {row["id"]: row["run_id"] for row in page_steps(client_for(always), "asc")} == owner


def test_0168_steps_list_answers_400_to_every_request(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, generation="letta-0.16.8")
    sim.add_history(20, max_age_seconds=600)
    client = client_for(sim)
    # As measured (generations.md): its router passes order=(order == "asc"), a bool, on.
    measured = "Argument order does not match type typing.Optional[str]; is False of type <class 'bool'>"
    for query in ({}, {"order": "desc"}, {"limit": 1000, "start_date": "2026-01-01T00:00:00+00:00"}):
        response = client.get("/v1/steps/", params=query)
        assert (response.status_code, response.json()) == (400, {"detail": measured}), query
    response = client.get("/v1/steps/", params={"order": "asc", "limit": 1000})
    assert (response.status_code, response.json()) == (400, {"detail": measured.replace("False", "True")})
    assert client.get("/v1/steps/", params={"order": "sideways"}).status_code == 422  # FastAPI first
    assert client.get(f"/v1/runs/{sim.truth()[0].id}/steps").status_code == 200


# -- step rows exist before their step is done ----------------------------------------------------

IN_FLIGHT = {"created", "running", "pending"}


@pytest.mark.parametrize("generation", ["spec", "letta-0.16.8", "cloud", "letta-0.11"])
def test_step_rows_are_pending_until_their_step_ends(sim_factory, client_for, clock, generation) -> None:
    sim = sim_factory(clock, generation=generation, duration_range=(1.0, 1.0))
    sim.burst(20)
    client = client_for(sim)
    seen = Counter()
    for _ in range(11):
        clock.advance(0.1)
        served = {}
        for run_id, status in ((run["id"], run["status"]) for run in client.get("/v1/runs/").json()):
            rows = client.get(f"/v1/runs/{run_id}/steps", params={"order": "asc"}).json()
            for position, row in enumerate(rows):
                served[row["id"]] = row
                final = row["status"] != "pending"
                seen[(status in IN_FLIGHT, final)] += 1
                if not final:
                    assert status in IN_FLIGHT, "every row is final once the run is terminal"
                    assert position == len(rows) - 1, "only the step under way is pending"
                    usage = (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"])
                    assert usage == (0, 0, 0) and row["stop_reason"] is None
        if generation != "letta-0.16.8":
            assert {row["id"]: row for row in list_steps(client, limit=1000)} == served
    # Seen in flight: pending rows and final ones (earlier steps); and final rows of ended runs.
    assert seen[(True, False)] and seen[(True, True)] and seen[(False, True)]
    assert not seen[(False, False)]
    finished(sim, clock)
    for run in sim.truth():
        rows = client.get(f"/v1/runs/{run.id}/steps", params={"order": "asc"}).json()
        assert [(row["id"], row["status"]) for row in rows] == [(step.id, step.status) for step in run.steps]
        assert all(run.created_at <= step.created_at < run.completed_at for step in run.steps)


# -- ground truth, per generation -----------------------------------------------------------------


@pytest.mark.parametrize("generation", ["spec", "letta-0.16.8", "cloud", "letta-0.11"])
def test_truth_is_what_each_generation_serves(sim_factory, client_for, clock, generation) -> None:
    sim = sim_factory(clock, generation=generation, write_lag_fraction=0.5, late_visibility_fraction=0.3)
    sim.burst(40)
    sim.add_history(60, max_age_seconds=600)
    finished(sim, clock)
    client = client_for(sim)
    truth = sim.truth()
    listed = {run["id"]: run for run in client.get("/v1/runs/", params={"limit": 1000}).json()}
    assert listed.keys() == {run.id for run in truth}
    for run in truth:
        body = listed[run.id]
        rows = client.get(f"/v1/runs/{run.id}/steps", params={"order": "asc", "limit": 1000}).json()
        assert run.num_steps == len(rows) == len(run.steps)
        served = [(r["id"], r["model"], r["provider_name"], r["status"], r["stop_reason"]) for r in rows]
        assert served == [(s.id, s.model, s.provider_name, s.status, s.stop_reason) for s in run.steps]
        prompt, completion = sum(r["prompt_tokens"] for r in rows), sum(r["completion_tokens"] for r in rows)
        assert (prompt, completion) == (
            sum(step.prompt_tokens for step in run.steps),
            sum(step.completion_tokens for step in run.steps),
        )
        usage = client.get(f"/v1/runs/{run.id}/usage").json()
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt, completion)
        assert body["status"] == run.status and body.get("stop_reason") == run.stop_reason
        assert body["total_duration_ns"] == run.total_duration_ns and body["ttft_ns"] == run.ttft_ns
        agents = {body.get("agent_id"), body["metadata"].get("agent_id")} | {r["agent_id"] for r in rows}
        assert agents - {None} == {run.agent_id}, "the agent is findable, and the right one"
    oldest_first = [step.id for step in steps_in_order(truth)]
    if generation == "letta-0.11":  # newest first whatever is asked
        assert ids(list_steps(client, limit=1000)) == oldest_first[::-1]
    elif generation != "letta-0.16.8":
        assert ids(page_steps(client, "asc")) == oldest_first
    usage = sim.truth_usage_totals()
    assert usage["prompt_tokens"] == sum(step.prompt_tokens for run in truth for step in run.steps)
    assert usage["steps"] == sum(run.num_steps for run in truth)


# -- Letta Cloud ------------------------------------------------------------------------------------


def test_cloud_answers_404_where_its_reference_has_no_route(sim_factory, client_for, clock) -> None:
    sim = sim_factory(clock, generation="cloud", trace_mode="rows")
    sim.burst(10)
    finished(sim, clock)
    client = client_for(sim)
    truth = sim.truth()
    for run_id in [run.id for run in truth] + [UNKNOWN_ID]:
        for path in (f"/v1/runs/{run_id}/metrics", f"/v1/runs/{run_id}/trace"):
            response = client.get(path)
            assert (response.status_code, response.json()) == (404, {"detail": "Not Found"}), path
    response = client.get("/v1/runs/active")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert client.get("/v1/runs/", params={"active": "true"}).json() == []  # the list's filter stays
    assert client.get(f"/v1/runs/{truth[0].id}/usage").status_code == 200
    # Nothing served says which tools a run used, nor any trace.
    assert all(run.tools_used == [] and run.trace_rows == () for run in truth)
    assert sim.truth_usage_totals()["tool_calls"] == 0


# -- Letta 0.11 (the jobs era) ----------------------------------------------------------------------


def capture_011(name: str) -> Any:
    data = json.loads((REAL_011 / f"{name}.json").read_text())
    # Some files hold the whole exchange, some the body alone.
    return data["body"] if isinstance(data, dict) and {"path", "body"} <= data.keys() else data


def assert_like(real: Any, simulated: Any, where: str = "", loose: frozenset[str] = frozenset()) -> None:
    """``simulated`` has ``real``'s keys in its order at every level, and its JSON types (a key in
    ``loose`` may be set where the capture has null)."""
    if isinstance(real, dict):
        assert isinstance(simulated, dict) and list(simulated) == list(real), where
        for key, value in real.items():
            assert_like(value, simulated[key], f"{where}.{key}", loose)
    elif isinstance(real, list):
        assert isinstance(simulated, list) and bool(simulated) == bool(real), where
        for item in simulated:
            assert_like(real[0], item, f"{where}[]", loose)
    elif where.rsplit(".", 1)[-1] not in loose or simulated is None:
        assert json_type(simulated) == json_type(real), (where, simulated, real)


def jobs_era(sim_factory: Callable[..., Simulator], clock: FakeClock, **config: Any) -> Simulator:
    return sim_factory(clock, generation="letta-0.11", **config)


def test_jobs_era_bodies_match_the_captures_key_for_key(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock)
    sim.add_history(300, max_age_seconds=600)
    client = client_for(sim)
    listed = client.get("/v1/runs/", params={"limit": 1000}).json()
    assert len(listed) == 300

    def first(kind: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return next(run for run in listed if kind(run))

    synchronous = first(lambda run: run["metadata"].get("job_type") == "send_message")
    failed = first(lambda run: run["status"] == "failed")
    background = first(lambda run: "result" in run["metadata"])
    callbacks = frozenset({"callback_url", "callback_sent_at", "callback_status_code", "callback_error"})
    for real, run in (("run0", synchronous), ("run_failed", failed), ("run_async", background)):
        assert_like(capture_011(real), run, real, callbacks)
        assert_like(capture_011(real), client.get(f"/v1/runs/{run['id']}").json(), real, callbacks)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", run["completed_at"]), "naive"
        assert run["created_at"].endswith("Z") and run["ttft_ns"] is None
    assert failed["total_duration_ns"] and background["total_duration_ns"] is None
    assert background["metadata"]["result"]["usage"]["run_ids"] == [background["id"]]
    rows = client.get(f"/v1/runs/{synchronous['id']}/steps").json()
    assert_like(capture_011("run0_steps")[0], rows[0], "step", frozenset({"trace_id"}))
    failed_rows = client.get(f"/v1/runs/{failed['id']}/steps").json()  # newest first
    assert_like(capture_011("run_failed_steps")[0], failed_rows[0], "failed step", frozenset({"trace_id"}))
    assert (failed_rows[0]["status"], failed_rows[0]["stop_reason"], failed_rows[0]["total_tokens"]) == (
        "failed", "error", 0,
    )  # fmt: skip
    assert_like(capture_011("run0_usage"), client.get(f"/v1/runs/{synchronous['id']}/usage").json())
    real_step_keys = list(capture_011("steps_default")[0])
    assert all(list(row) == real_step_keys for row in list_steps(client, limit=1000))
    assert client.get("/v1/health/").json()["version"] == "0.11.7"


def test_jobs_era_run_list_ignores_what_it_does_not_declare(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock)
    sim.add_history(70, max_age_seconds=600)
    sim.burst(5)
    clock.advance(0.01)
    client = client_for(sim)
    default = ids(client.get("/v1/runs/").json())
    everything = sorted(sim.truth(), key=lambda run: (run.created_at, run.id), reverse=True)
    assert len(default) == 50, "default limit 50"
    assert default[5:] == [run.id for run in everything][: 50 - 5], "newest first (five in flight on top)"
    truth = sim.truth()
    for query in (
        {"active": "true"},
        {"statuses": "failed"},
        {"order": "asc"},
        {"ascending": "true"},
        {"stop_reason": "end_turn"},
        {"agent_id": truth[0].agent_id},
        {"conversation_id": "conv-x"},
    ):
        assert ids(client.get("/v1/runs/", params=query).json()) == default, query
    # Captured: list_limit3_order_asc.json answered as list_limit3.json.
    assert ids(client.get("/v1/runs/", params={"limit": 3, "order": "asc"}).json()) == default[:3]


def test_jobs_era_cursors_are_absolute_and_unknown_ones_404(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock)
    sim.add_history(60, max_age_seconds=600)
    client = client_for(sim)
    newest_first = ids(client.get("/v1/runs/", params={"limit": 1000}).json())

    def page(**query: Any) -> list[str]:
        return ids(client.get("/v1/runs/", params={"limit": 1000, **query}).json())

    pivot = newest_first[5]
    assert page(after=pivot) == newest_first[:5], "after: newer"
    assert page(before=pivot) == newest_first[6:], "before: older"
    assert page(after=pivot, order="asc") == newest_first[:5], "whatever the order"
    # The limit cuts from the newest end, not next to the cursor (page_after_2nd.json).
    assert page(after=newest_first[20], limit=2) == newest_first[:2]
    # Both cursors: twice the limit fetched, the middle kept (Letta's _list_postprocess).
    assert page(before=newest_first[2], after=newest_first[40], limit=5) == newest_first[6:11]
    real = json.loads((REAL_011 / "page_after_unknown.json").read_text())
    response = client.get(real["path"])
    assert (response.status_code, response.json()) == (real["status"], real["body"])


def test_jobs_era_filters_apply_after_the_limit_on_the_metadata(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock)
    sim.add_history(200, max_age_seconds=600)
    client = client_for(sim)
    page = client.get("/v1/runs/", params={"limit": 20}).json()
    agent = sim.truth()[0].agent_id
    filtered = ids(client.get("/v1/runs/", params={"agent_ids": agent, "limit": 20}).json())
    assert filtered == [run["id"] for run in page if run["metadata"].get("agent_id") == agent]
    truly = [run.id for run in sim.truth() if run.agent_id == agent]
    assert len(filtered) < min(20, len(truly)), "fewer than the limit, and failed or background runs lost"
    streamed = ids(client.get("/v1/runs/", params={"background": "false", "limit": 20}).json())
    assert streamed == [run["id"] for run in page if run["metadata"].get("background") is False]
    assert streamed and client.get("/v1/runs/", params={"background": "true"}).json() == []


def test_jobs_era_missing_routes_and_runs_answer_as_captured(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock)
    (run_id,) = sim.burst(1)
    finished(sim, clock)
    client = client_for(sim)
    for name in ("run_missing", "run_missing_metrics", "runs_active"):
        real = json.loads((REAL_011 / f"{name}.json").read_text())
        response = client.get(real["path"])
        assert (response.status_code, response.json()) == (real["status"], real["body"]), name
    for route, real in (("metrics", "run0_metrics"), ("trace", "run_failed_trace")):
        response = client.get(f"/v1/runs/{run_id}/{route}")
        assert (response.status_code, response.json()) == (404, capture_011(real)), route
    response = client.get(f"/v1/runs/{UNKNOWN_ID}/usage")
    assert (response.status_code, response.json()) == (404, {"detail": f"Run '{UNKNOWN_ID}' not found"})
    # The steps query looks no job up: an unknown run simply has none.
    assert client.get(f"/v1/runs/{UNKNOWN_ID}/steps").json() == []
    assert client.get(f"/v1/runs/{run_id}/steps", params={"order": "up"}).status_code == 400


def test_jobs_era_usage_double_counts_the_cumulative_last_row(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock)
    sim.add_history(200, max_age_seconds=600)
    client = client_for(sim)
    runs = {run["id"]: run for run in client.get("/v1/runs/", params={"limit": 1000}).json()}
    several = [run for run in sim.truth() if run.num_steps > 1 and run.steps[-1].status == "success"]
    assert several
    for run in several:
        rows = client.get(f"/v1/runs/{run.id}/steps", params={"order": "asc"}).json()
        *earlier, last = rows
        # 0.11.7's run2: 908/12, then 1984/24: the last row holds the run's total, its own step in it.
        assert last["prompt_tokens"] > sum(row["prompt_tokens"] for row in earlier)
        assert last["completion_tokens"] > sum(row["completion_tokens"] for row in earlier)
        usage = client.get(f"/v1/runs/{run.id}/usage").json()
        assert usage["prompt_tokens"] == sum(row["prompt_tokens"] for row in rows)
        assert usage["total_tokens"] == last["total_tokens"] + sum(row["total_tokens"] for row in earlier)
        result = runs[run.id]["metadata"].get("result")
        if result:  # a background run's reply says the real total: the last row's
            assert (result["usage"]["prompt_tokens"], result["usage"]["step_count"]) == (
                last["prompt_tokens"], len(rows),
            )  # fmt: skip


def test_jobs_era_statuses_timings_and_the_agent(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock, duration_range=(0.5, 1.0))
    sim.burst(150)
    clock.advance(0.2)
    client = client_for(sim)
    in_flight = client.get("/v1/runs/", params={"limit": 1000}).json()
    statuses = {run["id"]: run["status"] for run in in_flight}
    assert set(statuses.values()) == {"created", "pending", "running"}
    synchronous = [run for run in in_flight if run["metadata"]["job_type"] == "send_message"]
    assert "running" not in {run["status"] for run in synchronous}, "created -> terminal, never running"
    # /active: created and running only (a pending run is neither), oldest first, at most 50.
    active = client.get("/v1/runs/active").json()
    expected = [run["id"] for run in reversed(in_flight) if run["status"] in {"created", "running"}]
    assert ids(active) == expected[:50] and len(expected) > 50
    sim.add_history(600, max_age_seconds=600)
    finished(sim, clock)
    listed = client.get("/v1/runs/", params={"limit": 1000}).json()
    assert {run["status"] for run in listed} == {"completed", "failed", "cancelled", "expired"}
    assert any(run["status"] == "failed" and run["total_duration_ns"] for run in listed), "failed ones too"
    for run in listed:
        metadata = run["metadata"]
        background = "result" in metadata or metadata.get("job_type") == "send_message_async"
        assert run["ttft_ns"] is None and "stop_reason" not in run and "agent_id" not in run
        if run["status"] != "failed":  # a failure's metadata no longer tells a background run
            assert (run["total_duration_ns"] is None) == (background or run["status"] == "expired")
        rows = client.get(f"/v1/runs/{run['id']}/steps").json()
        assert rows or "agent_id" in metadata, "the agent is findable from the run or its steps"
        if run["status"] == "failed":
            assert list(metadata) == ["error"]
            assert (rows[0]["status"], rows[0]["stop_reason"]) == ("failed", "error")


def test_jobs_era_steps_list_is_newest_first_with_absolute_cursors(sim_factory, client_for, clock) -> None:
    sim = jobs_era(sim_factory, clock)
    sim.add_history(40, max_age_seconds=600)
    client = client_for(sim)
    newest_first = [step.id for step in reversed(steps_in_order(sim.truth()))]
    assert ids(list_steps(client, limit=1000)) == newest_first
    assert ids(list_steps(client, limit=1000, order="asc")) == newest_first, "order asked, order ignored"
    assert ids(list_steps(client)) == newest_first[:50]
    pivot = newest_first[10]
    assert ids(list_steps(client, after=pivot, order="asc")) == newest_first[:10], "after: newer"
    assert ids(list_steps(client, before=pivot, limit=1000)) == newest_first[11:], "before: older"
    rows = steps_in_order(sim.truth())
    first, last = rows[5], rows[30]
    # Dates parsed by the handler: a zone is optional (UTC), strict bounds as everywhere.
    window = list_steps(client, limit=1000, start_date=first.created_at.replace(tzinfo=None).isoformat(),
                        end_date=last.created_at.isoformat())  # fmt: skip
    assert ids(window) == [step.id for step in reversed(rows[6:30])]
    response = client.get("/v1/steps/", params={"start_date": "soon"})
    assert (response.status_code, response.json()) == (400, {"detail": "Invalid isoformat string: 'soon'"})
    response = client.get("/v1/steps/", params={"before": UNKNOWN_STEP})
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"No Step found with id {UNKNOWN_STEP}"},
    )
    owner = {step.id: run.id for run in sim.truth() for step in run.steps}
    assert all(row["job_id"] == owner[row["id"]] for row in list_steps(client, limit=1000))
