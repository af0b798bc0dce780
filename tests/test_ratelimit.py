"""The adaptive request rate: AIMD on a fake clock, then against a simulator with a real rate limit."""

from __future__ import annotations

import asyncio

import pytest

from exporter.letta.ratelimit import FLOOR, AdaptiveRateLimiter
from tests.support import make_exporter, runs_counted, select, served_samples, settle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def clean_seconds(limiter: AdaptiveRateLimiter, clock: Clock, seconds: int, latency: float = 0.01) -> None:
    for _ in range(seconds * 8):
        clock.now += 0.125  # exact in binary: eight make a second
        limiter.answered(latency, throttled=False)


def test_grows_a_step_each_clean_second_up_to_the_ceiling() -> None:
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock)
    assert limiter.rate == 25  # a quarter of the ceiling to start
    clean_seconds(limiter, clock, 4)
    assert limiter.rate == pytest.approx(25 + 4 * limiter.step)
    clean_seconds(limiter, clock, 100)
    assert limiter.rate == 100


def test_halves_once_per_burst_of_429s_and_never_below_the_floor() -> None:
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock)
    clean_seconds(limiter, clock, 100)
    for _ in range(4):  # the four requests in flight all come back 429 together
        limiter.answered(0.01, throttled=True)
    assert limiter.rate == 50
    clock.now += 5
    limiter.answered(0.01, throttled=True)
    assert limiter.rate == 25
    for _ in range(20):
        clock.now += 5
        limiter.answered(0.01, throttled=True)
    assert limiter.rate == FLOOR


def test_does_not_grow_while_latency_climbs() -> None:
    clock = Clock()
    limiter = AdaptiveRateLimiter(100, clock=clock)
    clean_seconds(limiter, clock, 3, latency=0.02)
    held = limiter.rate
    clean_seconds(limiter, clock, 5, latency=0.2)  # ten times slower: the server is loaded
    assert limiter.rate == held
    clean_seconds(limiter, clock, 5, latency=0.02)
    assert limiter.rate > held


def test_no_ceiling_means_no_cap_and_no_adapting() -> None:
    limiter = AdaptiveRateLimiter(0)
    assert not limiter.capped and limiter.limit == 0
    limiter.answered(0.01, throttled=True)
    asyncio.run(limiter.acquire())  # returns at once
    assert limiter.throttled == 1  # 429s are counted (for the activity log) all the same


def test_429s_are_counted_capped_or_not() -> None:
    limiter = AdaptiveRateLimiter(40)
    for throttled in (True, False, True):
        limiter.answered(0.01, throttled=throttled)
    assert limiter.throttled == 2 and limiter.limit == limiter.rate > 0


def drain(sim, **settings: object) -> tuple[float, float, float]:
    """(429s, other answers, runs counted) after a 1,000-run burst is drained."""

    async def scenario():
        exporter = make_exporter(sim, page_size=100, enrich_steps=False, enrich_trace=False,
                                 agent_names=False, concurrency=8, **settings)  # fmt: skip
        await exporter.poller.tick()
        sim.burst(1000)
        await settle(exporter, sim, timeout=120)
        await exporter.client.aclose()
        return exporter

    samples = served_samples(asyncio.run(scenario()))
    codes = select(samples, "letta_exporter_api_requests_total", ("code",))
    throttled = codes.pop(("429",), 0)
    assert samples[("letta_exporter_request_rate_limit", ())] <= settings.get("max_requests_per_second", 0)
    return throttled, sum(codes.values()), runs_counted(samples)


SERVER_LIMIT = 100  # requests/s, answered 429 with Retry-After past that


@pytest.mark.integration
@pytest.mark.slow
def test_a_burst_drains_under_a_server_rate_limit_with_few_429s_and_no_loss(sim_factory) -> None:
    sim = sim_factory()
    sim.faults.rate_limit = SERVER_LIMIT
    throttled, answered, counted = drain(sim, max_requests_per_second=8 * SERVER_LIMIT, max_retries=5)
    assert counted == 1000
    # The exporter starts at twice what the server allows: it halves on the first 429s, then
    # probes upwards a step a second and halves again each time it meets the limit.
    assert throttled <= 0.05 * answered, (throttled, answered)


@pytest.mark.integration
@pytest.mark.slow
def test_control_without_the_adaptive_rate_the_same_burst_meets_many_429s(sim_factory) -> None:
    sim = sim_factory()
    sim.faults.rate_limit = SERVER_LIMIT
    throttled, answered, _ = drain(sim, max_requests_per_second=0, max_retries=5)
    assert throttled > 0.05 * answered, (throttled, answered)
