"""The Letta client over real loopback HTTP: retries, backoff, Retry-After, errors, headers."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.letta.client import LettaClient
from exporter.letta.errors import (
    LettaHTTPError,
    LettaMalformedResponse,
    LettaNotFound,
    LettaNotImplemented,
    LettaTransportError,
)
from exporter.letta.models import Run
from exporter.prometheus import ExporterMetrics
from tests.support import free_port, select, served_samples


async def first_page(client: LettaClient, limit: int) -> list[Run]:
    """The newest ``limit`` runs: the first page of a run listing."""
    async for page in client.iter_runs(page_size=limit):
        return page
    raise AssertionError("a walk yields at least one page")


class Harness:
    def __init__(self, base_url: str, **options: object) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ExporterMetrics(self.registry)
        self.waits: list[float] = []
        self.on_wait = lambda count: None

        async def record_sleep(seconds: float) -> None:
            self.waits.append(seconds)
            self.on_wait(len(self.waits))

        self.client = LettaClient(base_url, observer=self.metrics, sleep=record_sleep, **options)

    def codes(self, endpoint: str = "list_runs") -> dict[str, float]:
        by_code = select(
            served_samples(self.metrics), "letta_exporter_api_requests_total", ("endpoint", "code")
        )
        return {code: v for (ep, code), v in by_code.items() if ep == endpoint}

    def call(self, coro_factory):
        async def go():
            try:
                return await coro_factory(self.client)
            finally:
                await self.client.aclose()

        return asyncio.run(go())


def test_429_is_retried_after_the_servers_retry_after(sim_factory) -> None:
    sim = sim_factory()
    sim.faults.rate_429, sim.faults.retry_after = 1.0, 0.7
    harness = Harness(sim.base_url, max_retries=2)
    with pytest.raises(LettaHTTPError) as caught:
        harness.call(lambda c: first_page(c, 10))
    assert caught.value.status == 429
    assert harness.waits == [0.7, 0.7]
    assert harness.codes() == {"429": 3}


def test_5xx_backs_off_exponentially_with_jitter_then_succeeds(sim_factory) -> None:
    sim = sim_factory()
    sim.burst(3)
    sim.faults.rate_500 = 1.0
    harness = Harness(sim.base_url, max_retries=4, backoff_base=0.1)

    def recover(waits: int) -> None:
        if waits == 3:
            sim.faults.rate_500 = 0.0

    harness.on_wait = recover
    runs = harness.call(lambda c: first_page(c, 10))
    assert len(runs) == 3
    assert harness.codes() == {"500": 3, "200": 1}
    for attempt, wait in enumerate(harness.waits[:3]):
        assert 0 <= wait <= 0.1 * 2**attempt


def test_html_error_page_and_non_json_body_are_bounded_errors(sim_factory) -> None:
    sim = sim_factory()
    sim.faults.rate_502 = 1.0
    harness = Harness(sim.base_url, max_retries=1)
    with pytest.raises(LettaHTTPError) as caught:
        harness.call(lambda c: first_page(c, 10))
    assert caught.value.status == 502 and len(str(caught.value)) < 300

    sim.faults.rate_502, sim.faults.rate_malformed = 0.0, 1.0
    harness = Harness(sim.base_url, max_retries=1)
    with pytest.raises(LettaMalformedResponse):
        harness.call(lambda c: first_page(c, 10))
    samples = served_samples(harness.metrics)
    assert samples[("letta_exporter_api_malformed_responses_total", (("endpoint", "list_runs"),))] == 2


def test_client_errors_are_not_retried(sim_factory) -> None:
    sim = sim_factory()
    harness = Harness(sim.base_url, max_retries=3)
    with pytest.raises(LettaHTTPError) as caught:
        harness.call(lambda c: first_page(c, 5000))
    assert caught.value.status == 422 and "less than or equal to 1000" in str(caught.value)
    assert harness.codes() == {"422": 1} and harness.waits == []


def test_404_and_501_have_their_own_errors(sim_factory) -> None:
    sim = sim_factory()
    harness = Harness(sim.base_url, max_retries=3)
    missing = "run-00000000-0000-4000-8000-000000000000"
    with pytest.raises(LettaNotFound):
        harness.call(lambda c: c.retrieve_run(missing))
    harness = Harness(sim.base_url, max_retries=3)
    with pytest.raises(LettaNotImplemented):
        harness.call(lambda c: c.run_trace(missing))
    assert harness.codes("retrieve_trace_for_run") == {"501": 1}


def test_slow_replies_time_out_and_are_counted(sim_factory) -> None:
    sim = sim_factory()
    sim.faults.rate_slow, sim.faults.slow_seconds = 1.0, 1.0
    harness = Harness(sim.base_url, max_retries=1, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(LettaTransportError):
        harness.call(lambda c: first_page(c, 10))
    assert time.monotonic() - started < 1.5
    assert harness.codes() == {"timeout": 2}


def test_connection_refused_is_a_transport_error() -> None:
    harness = Harness(f"http://127.0.0.1:{free_port()}", max_retries=2)
    with pytest.raises(LettaTransportError):
        harness.call(lambda c: first_page(c, 10))
    assert harness.codes() == {"transport_error": 3}


def test_headers_and_methods(sim_factory) -> None:
    sim = sim_factory(api_key="sk-let-header-check-123456")
    sim.burst(2)
    harness = Harness(sim.base_url, api_key="sk-let-header-check-123456")
    runs = harness.call(lambda c: first_page(c, 10))
    assert len(runs) == 2
    (request,) = sim.requests
    assert request.method == "GET"
    assert request.headers["authorization"] == "Bearer sk-let-header-check-123456"
    assert request.headers["user-agent"].startswith("letta-exporter/")

    no_key = Harness(sim.base_url, max_retries=0)
    with pytest.raises(LettaHTTPError) as caught:
        no_key.call(lambda c: first_page(c, 10))
    assert caught.value.status == 401


def test_rate_cap_spaces_requests(sim_factory) -> None:
    sim = sim_factory()
    harness = Harness(sim.base_url, max_requests_per_second=20)

    async def many(client: LettaClient):
        await asyncio.gather(*(first_page(client, 1) for _ in range(11)))

    started = time.monotonic()
    harness.call(many)
    assert time.monotonic() - started >= 0.5  # 11 starts at least 50 ms apart


def test_paging_walks_a_burst_newest_first_without_repeats(sim_factory) -> None:
    sim = sim_factory()
    ids = set(sim.burst(23))

    async def walk(client: LettaClient):
        seen = []
        async for page in client.iter_runs(page_size=5):
            seen.extend(run.id for run in page)
        return seen

    seen = Harness(sim.base_url).call(walk)
    assert len(seen) == 23 and set(seen) == ids
