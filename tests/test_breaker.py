"""The poll circuit breaker: opens after repeated failures, pauses with backoff, recovers alone."""

from __future__ import annotations

import asyncio

from exporter.breaker import CircuitBreaker
from tests.support import FakeClock, assert_matches_truth, make_exporter, served_samples, settle


def test_opens_after_threshold_and_pauses_grow_then_close() -> None:
    clock = FakeClock(1000.0)
    breaker = CircuitBreaker(threshold=3, base_pause=10, max_pause=35, clock=clock)
    for _ in range(2):
        breaker.poll_ended(False)
        assert breaker.allow() and not breaker.is_open
    breaker.poll_ended(False)
    assert breaker.is_open and not breaker.allow()
    clock.now += 10
    assert breaker.allow()  # the probe
    breaker.poll_ended(False)
    clock.now += 19
    assert not breaker.allow()  # the pause doubled to 20 s
    clock.now += 1
    breaker.poll_ended(False)  # 40 s, capped at 35
    clock.now += 35
    assert breaker.allow()
    breaker.poll_ended(True)
    assert not breaker.is_open and breaker.failures == 0


def test_letta_outage_opens_the_circuit_and_counting_resumes_exactly_after(sim_factory) -> None:
    sim = sim_factory()

    async def scenario():
        exporter = make_exporter(sim, max_retries=0, poll_interval=0.2)
        await exporter.poller.tick()
        sim.burst(4)
        sim.faults.rate_500 = 1.0
        for _ in range(3):
            await exporter.poller.tick()
        during = served_samples(exporter)
        requests_before = len(sim.requests)
        await exporter.poller.tick()  # skipped: the circuit is open
        skipped = len(sim.requests) == requests_before
        sim.faults.rate_500 = 0.0
        await asyncio.sleep(1.1)  # the pause (1 s at this poll interval) ends; the probe succeeds
        await settle(exporter, sim)
        return exporter, during, skipped

    exporter, during, skipped = asyncio.run(scenario())
    assert during[("letta_exporter_circuit_open", ())] == 1
    assert during[("letta_exporter_up", ())] == 0
    assert skipped
    after = served_samples(exporter)
    assert after[("letta_exporter_circuit_open", ())] == 0
    assert after[("letta_exporter_up", ())] == 1
    assert_matches_truth(after, sim.truth())
