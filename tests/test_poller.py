"""Run lifecycle against the simulator over real loopback HTTP, one tick at a time.

Each test drives ``Poller.tick`` directly (no scheduler) so the moments between polls are chosen by
the test; the server, client, tracker and metrics are the real ones.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from exporter.labels import enum_label
from tests.conftest import EVERY_GENERATION, GENERATIONS
from tests.support import (
    assert_matches_truth,
    expected_from_truth,
    make_exporter,
    poll_new_runs,
    run,
    runs_counted,
    select,
    served_samples,
    settle,
    ticks,
)


def test_run_finishing_between_polls_is_counted_once(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim)
        await exporter.poller.tick()  # baseline: nothing yet
        sim.burst(1)
        await settle(exporter, sim)
        await ticks(exporter, 3)
        return exporter

    exporter = run(scenario())
    samples = served_samples(exporter)
    assert runs_counted(samples) == 1
    assert_matches_truth(samples, sim.truth())


@pytest.mark.parametrize("generation", EVERY_GENERATION)
def test_burst_larger_than_a_page_is_counted_exactly(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, page_size=10)
        await poll_new_runs(exporter, sim, 57)  # six pages
        return exporter

    exporter = run(scenario())
    samples = served_samples(exporter)
    assert runs_counted(samples) == 57
    assert_matches_truth(samples, sim.truth())


@pytest.mark.parametrize("generation", GENERATIONS)
def test_runs_visible_late_with_older_created_at_are_not_missed(sim_factory) -> None:
    sim = sim_factory(late_visibility_fraction=0.5, late_visibility_max=1.0)

    async def scenario():
        exporter = make_exporter(sim, discovery_overlap=3)
        await exporter.poller.tick()
        sim.set_rate(50)
        await ticks(exporter, 10, pause=0.2)
        sim.set_rate(0)
        await settle(exporter, sim)
        return exporter

    exporter = run(scenario())
    samples = served_samples(exporter)
    truth = sim.truth()
    assert len(truth) > 50
    assert_matches_truth(samples, truth)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_runs_visible_later_than_a_short_read_reaches_are_found_by_the_deep_pass(sim_factory) -> None:
    """Polls read a few seconds below the watermark; runs made visible later than that are found by
    the deep pass, which walks the overlap window a few pages a poll. Exact, and the deep pass is
    what found them: the polls' short reads alone reach 2 s, the runs come up to 6 s late."""
    sim = sim_factory(late_visibility_fraction=0.3, late_visibility_max=6.0)

    async def scenario():
        exporter = make_exporter(sim, discovery_overlap=8, page_size=20, poll_interval=0.3)
        options = exporter.poller.discovery.options
        assert (options.short_reach, options.deep_every) == (2.0, 4.0)
        await exporter.poller.tick()
        sim.set_rate(40)
        await ticks(exporter, 24, pause=0.2)  # ~10 s: late runs turn up while newer ones keep coming
        sim.set_rate(0)
        await settle(exporter, sim, timeout=20)
        return exporter

    exporter = run(scenario())
    truth = sim.truth()
    assert len(truth) > 120  # about 40 runs/s for 4-6 s, however slow the ticks
    assert_matches_truth(served_samples(exporter), truth)


@pytest.mark.integration  # long real-time run: the full run's, to keep plain pytest quick
def test_without_the_overlap_window_late_runs_would_be_missed(sim_factory) -> None:
    """The control for the test above: it shows the overlap window is what finds late runs."""
    sim = sim_factory(late_visibility_fraction=0.5, late_visibility_max=1.0)

    async def scenario():
        exporter = make_exporter(sim, discovery_overlap=0)
        await exporter.poller.tick()
        sim.set_rate(40)
        await ticks(exporter, 15, pause=0.2)
        sim.set_rate(0)
        assert await asyncio.to_thread(sim.wait_idle, 20)
        await ticks(exporter, 5, pause=0.1)
        return exporter

    exporter = run(scenario())
    assert runs_counted(served_samples(exporter)) < len(sim.truth())


def test_late_metrics_are_waited_for_so_durations_are_exact(sim_factory) -> None:
    sim = sim_factory(write_lag_fraction=1.0, write_lag_max=0.4)

    async def scenario():
        exporter = make_exporter(sim)
        await exporter.poller.tick()
        sim.set_rate(30)
        await ticks(exporter, 10, pause=0.15)
        sim.set_rate(0)
        await settle(exporter, sim)
        return exporter

    exporter = run(scenario())
    assert_matches_truth(served_samples(exporter), sim.truth())


def test_stuck_runs_show_in_active_gauges_and_are_counted_when_they_end(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim)
        await exporter.poller.tick()
        sim.add_stuck(2)
        await asyncio.sleep(0.3)
        await exporter.poller.tick()
        first = served_samples(exporter)
        await asyncio.sleep(1.0)
        await exporter.poller.tick()
        later = served_samples(exporter)
        sim.release_stuck()
        await settle(exporter, sim)
        return exporter, first, later

    exporter, first, later = run(scenario())
    assert sum(select(first, "letta_active_runs", ("status",)).values()) == 2
    age_first = first[("letta_active_run_max_age_seconds", ())]
    age_later = later[("letta_active_run_max_age_seconds", ())]
    assert 0.2 < age_first < age_later
    done = served_samples(exporter)
    assert select(done, "letta_active_runs", ("status",)) == {}
    assert done[("letta_active_run_max_age_seconds", ())] == 0
    assert runs_counted(done) == 2
    assert_matches_truth(done, sim.truth())


def test_history_is_not_counted_by_default(sim_factory) -> None:
    sim = sim_factory()
    history = set(sim.add_history(20, max_age_seconds=600))

    async def scenario():
        exporter = make_exporter(sim)
        await ticks(exporter, 3)
        sim.burst(3)
        await settle(exporter, sim, expected=3)
        return exporter

    exporter = run(scenario())
    samples = served_samples(exporter)
    new_runs = [r for r in sim.truth() if r.id not in history]
    assert len(new_runs) == 3
    assert runs_counted(samples) == 3
    assert_matches_truth(samples, new_runs)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_backfill_counts_recent_history_once(sim_factory) -> None:
    sim = sim_factory()
    sim.add_history(40, max_age_seconds=1200)

    async def scenario():
        exporter = make_exporter(sim, backfill="10m")
        await ticks(exporter, 3)
        await settle_pending(exporter)
        return exporter

    async def settle_pending(exporter) -> None:
        # Runs waiting for a figure Letta writes late (0.11's background runs) take a few looks.
        for _ in range(50):
            if not exporter.tracker.pending:
                break
            await exporter.poller.tick()
            await asyncio.sleep(0.05)

    exporter = run(scenario())
    started = exporter.poller.discovery.started_at  # "the last 10 minutes" counts from here
    recent = [r for r in sim.truth() if r.created_at.timestamp() >= started - 600]
    assert 0 < len(recent) < 40
    samples = served_samples(exporter)
    assert runs_counted(samples) == len(recent)
    assert_matches_truth(samples, recent)


def test_a_deleted_in_flight_run_is_dropped_and_counted_as_lost(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim)
        await exporter.poller.tick()
        (stuck,) = sim.add_stuck(1)
        await asyncio.sleep(0.2)
        await exporter.poller.tick()
        assert stuck in exporter.tracker.in_flight
        sim.delete_run(stuck)
        await ticks(exporter, 2)
        return exporter, stuck

    exporter, stuck = run(scenario())
    samples = served_samples(exporter)
    assert stuck not in exporter.tracker.in_flight
    assert samples[("letta_exporter_runs_lost_total", (("reason", "deleted"),))] == 1
    assert runs_counted(samples) == 0


@pytest.mark.parametrize("generation", GENERATIONS)
def test_a_fresh_exporter_on_the_same_server_does_not_recount(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        first = make_exporter(sim)
        await poll_new_runs(first, sim, 5)
        second = make_exporter(sim)  # a restart without a state file starts at "now"
        await ticks(second, 3)
        return first, second

    first, second = run(scenario())
    assert runs_counted(served_samples(first)) == 5
    assert runs_counted(served_samples(second)) == 0


@pytest.mark.integration  # long real-time run: the full run's, to keep plain pytest quick
def test_finalised_set_stays_bounded_over_a_long_run(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, discovery_overlap=0.5)
        await exporter.poller.tick()
        sim.set_rate(60)
        sizes = []
        for _ in range(25):
            await exporter.poller.tick()
            sizes.append(len(exporter.tracker.finalised))
            await asyncio.sleep(0.2)
        sim.set_rate(0)
        return exporter, sizes

    exporter, sizes = run(scenario())
    total = runs_counted(served_samples(exporter))
    assert total > 150
    # The dedupe set holds about (overlap + margin + tick) worth of runs, not the whole history.
    assert max(sizes[-5:]) < total / 2


def test_runs_created_after_start_count_even_when_the_first_polls_fail(sim_factory) -> None:
    sim = sim_factory()
    sim.add_history(5, max_age_seconds=300)

    async def scenario():
        sim.faults.rate_500 = 1.0
        exporter = make_exporter(sim, max_retries=0)
        await exporter.poller.tick()  # Letta down at start-up: no baseline yet
        sim.burst(3)
        assert await asyncio.to_thread(sim.wait_idle, 20)
        sim.faults.rate_500 = 0.0
        await settle(exporter, sim, expected=3)
        return exporter

    exporter = run(scenario())
    samples = served_samples(exporter)
    assert runs_counted(samples) == 3


def test_a_long_run_beyond_discoverys_reach_is_fetched_once_when_it_ends(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, discovery_overlap=0.5)
        await exporter.poller.tick()
        (long_run,) = sim.add_stuck(1)
        await asyncio.sleep(0.2)
        await exporter.poller.tick()
        await asyncio.sleep(1.0)
        sim.burst(2)  # newer runs move the horizon past the long run
        await asyncio.sleep(0.5)  # the burst's runs end (the long run cannot: wait_idle would hang)
        await ticks(exporter, 4, pause=0.1)
        assert runs_counted(served_samples(exporter)) == 2
        assert long_run in exporter.tracker.in_flight
        sim.release_stuck()
        await settle(exporter, sim)
        return exporter, long_run

    exporter, long_run = run(scenario())
    samples = served_samples(exporter)
    assert runs_counted(samples) == 3
    assert_matches_truth(samples, sim.truth())
    retrieves = [r for r in sim.requests if r.path.rstrip("/") == f"/v1/runs/{long_run}"]
    assert len(retrieves) == 1


def test_runs_seen_in_flight_cost_no_retrieve_when_discovery_sees_them_end(sim_factory) -> None:
    sim = sim_factory(duration_range=(0.5, 1.0))

    async def scenario():
        exporter = make_exporter(sim)
        await exporter.poller.tick()
        sim.set_rate(30)
        await ticks(exporter, 12, pause=0.15)
        sim.set_rate(0)
        await settle(exporter, sim)
        return exporter

    exporter = run(scenario())
    samples = served_samples(exporter)
    assert_matches_truth(samples, sim.truth())
    calls = select(samples, "letta_exporter_api_requests_total", ("endpoint",))
    assert calls.get(("retrieve_run",), 0) == 0, calls


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("max_pending", [5, 40])
def test_a_backlog_past_the_pending_bound_waits_in_letta_and_is_counted_exactly(
    sim_factory, max_pending: int
) -> None:
    """Backpressure: a burst eight (or three) times the pending bound is admitted no faster than the
    workers make room, oldest first, with pages smaller and larger than the bound; the rest waits in
    Letta (the watermark stops short of it), and every run is counted once, fully enriched."""
    sim = sim_factory(write_lag_fraction=0.5, write_lag_max=0.3)
    burst = 40 if max_pending == 5 else 3 * max_pending

    async def scenario():
        exporter = make_exporter(sim, max_pending=max_pending, page_size=10)
        await exporter.poller.tick()
        sim.burst(burst)
        assert await asyncio.to_thread(sim.wait_idle, 20)
        sizes: list[int] = []

        async def sample() -> None:  # the pending set's size, all along, polls and workers alike
            while True:
                sizes.append(len(exporter.tracker.pending))
                await asyncio.sleep(0.002)

        sampler = asyncio.create_task(sample())
        waited = 0.0
        for _ in range(300):
            await exporter.poller.tick()
            samples = served_samples(exporter)
            waited = max(waited, samples[("letta_exporter_oldest_unrecorded_run_age_seconds", ())])
            if runs_counted(samples) == burst:
                break
            await asyncio.sleep(0.05)
        sampler.cancel()
        await ticks(exporter, 2)
        return exporter, max(sizes), waited

    exporter, peak, waited = run(scenario())
    samples = served_samples(exporter)
    assert peak == max_pending  # the bound held
    assert waited > 0  # and the wait showed
    assert runs_counted(samples) == burst
    assert_matches_truth(samples, sim.truth())
    assert select(samples, "letta_exporter_enrichment_given_up_total", ("source",)) == {}
    assert not exporter.tracker.pending and exporter.tracker.deferred_since is None


@pytest.mark.parametrize("generation", GENERATIONS)
def test_a_burst_of_a_thousand_runs_between_two_polls_is_counted_exactly(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, page_size=100, discovery_overlap=2)
        await exporter.poller.tick()
        sim.burst(1000)  # ten pages, all created between two polls
        await settle(exporter, sim, timeout=60)
        return exporter

    exporter = run(scenario())
    samples = served_samples(exporter)
    assert runs_counted(samples) == 1000
    assert_matches_truth(samples, sim.truth())


@pytest.mark.parametrize("generation", GENERATIONS)
def test_catching_up_five_thousand_runs_after_downtime_counts_each_once(
    sim_factory, tmp_path, generation
) -> None:
    """Enrichment off: this is about discovery paging 50 pages deep across a restart (and about
    backpressure: one poll takes in no more than the pending bound, the rest waits in Letta). On 0.11
    the steps are read (through the steps stream, a few pages), since only they name the agent of a
    failed or background run there."""
    sim = sim_factory()
    state_file = tmp_path / "state.json"
    lean = dict(page_size=100, state_file=state_file, enrich_metrics=False,
                enrich_steps=generation == "letta-0.11", enrich_usage=False, enrich_trace=False,
                agent_names=False, max_pending=2000)  # fmt: skip

    async def scenario():
        first = make_exporter(sim, **lean)
        await first.poller.tick()
        sim.burst(20)
        await settle(first, sim)
        await first.client.aclose()
        sim.burst(5000)  # while the exporter is down
        assert await asyncio.to_thread(sim.wait_idle, 60)
        second = make_exporter(sim, **lean)
        await ticks(second, 1)  # one poll reads all fifty pages, and takes in 2,000
        # Recorded, or waiting for a figure Letta writes late (0.11's background runs).
        after_one = runs_counted(served_samples(second)) + len(second.tracker.pending)
        await ticks(second, 4)
        await settle(second, sim)
        return second, after_one

    second, after_one_poll = run(scenario())
    assert after_one_poll == 20 + 2000
    samples = served_samples(second)
    expected = expected_from_truth(sim.truth()).runs
    if generation != "letta-0.11":  # without steps, a run's stop reason is the run's own
        expected = Counter()
        for truth in sim.truth():
            expected[(truth.agent_id, truth.status, enum_label(truth.stop_reason))] += 1
    assert select(samples, "letta_runs_total", ("agent_id", "status", "stop_reason")) == expected


def test_runs_left_in_letta_by_backpressure_are_not_looked_up_one_by_one(sim_factory) -> None:
    """Runs seen in flight that finish while the pending set is full are listed, finished, by
    discovery: waiting for room, they cost no retrieve_run each poll."""
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, max_pending=3, page_size=10)
        await exporter.poller.tick()
        stuck = sim.add_stuck(8)
        await asyncio.sleep(0.2)
        await ticks(exporter, 1)
        assert set(stuck) <= set(exporter.tracker.in_flight)
        sim.burst(12)
        sim.release_stuck()
        assert await asyncio.to_thread(sim.wait_idle, 20)
        await settle(exporter, sim)
        return exporter

    exporter = run(scenario())
    assert runs_counted(served_samples(exporter)) == 20
    retrieved = [
        r.path for r in sim.requests if r.path.rstrip("/").count("/") == 3 and "/v1/runs/run-" in r.path
    ]
    assert retrieved == []


def test_discovery_behind_its_backlog_waits_for_half_the_pending_set_to_drain(sim_factory) -> None:
    """While the pending set is more than half full after a deferral, a poll does not list the
    backlog again (it could admit next to nothing); once the workers drain it, discovery admits
    the next runs, oldest first, and none is counted twice."""
    sim = sim_factory(write_lag_fraction=0.0)

    def run_list_reads() -> int:
        lists = [r for r in sim.requests if r.path.rstrip("/") == "/v1/runs"]
        return sum(1 for r in lists if "active=true" not in r.query)

    async def scenario():
        exporter = make_exporter(sim, max_pending=4, page_size=10)
        discovery, tracker = exporter.poller.discovery, exporter.tracker  # the workers stay stopped
        await discovery.discover()
        sim.burst(20)
        assert await asyncio.to_thread(sim.wait_idle, 20)
        await discovery.discover()
        first = set(tracker.pending)
        assert len(first) == 4 and tracker.deferred_since is not None
        before = run_list_reads()
        await discovery.discover()
        await discovery.track()
        assert discovery.skipped and run_list_reads() == before
        for run_id in list(first)[:3]:  # the workers' part: three recorded, one left
            tracker.finalise(run_id)
        await discovery.discover()
        assert not discovery.skipped and run_list_reads() > before
        assert len(tracker.pending) == 4 and not (set(tracker.pending) - first) & set(tracker.finalised)

    run(scenario())
    retrieved = [r.path for r in sim.requests if "/v1/runs/run-" in r.path]
    assert retrieved == []
