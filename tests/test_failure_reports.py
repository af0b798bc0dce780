"""What an operator is told when polls fail: one line per poll, the cause, and what to check."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support import free_port, make_exporter, select, served_samples


def failed_poll_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def poll(exporter, times: int) -> None:
    async def go() -> None:
        for _ in range(times):
            await exporter.poller.tick()
        await exporter.client.aclose()

    asyncio.run(go())


@pytest.mark.parametrize("key", ["wrong-key-0123456789", None])
def test_a_refused_api_key_is_named_once_per_poll(sim_factory, caplog, key) -> None:
    sim = sim_factory(api_key="the-right-key")
    exporter = make_exporter(sim, api_key=key, max_retries=0)
    caplog.set_level(logging.DEBUG)
    poll(exporter, 2)

    lines = failed_poll_lines(caplog)
    assert len(lines) == 2, lines  # discover and track both failed each time: still one line a poll
    for line in lines:
        assert "LETTA_API_KEY" in line and sim.base_url in line and "HTTP 401" in line
        assert ("none is set" in line) == (key is None)
    assert all("wrong-key" not in r.getMessage() for r in caplog.records)  # the key itself never
    samples = served_samples(exporter)
    assert samples[("letta_exporter_up", ())] == 0
    reasons = select(samples, "letta_exporter_poll_failures_total", ("reason",))
    assert reasons == {("unauthorized",): 2}


def test_an_unreachable_server_is_named_with_host_port_and_the_os_error(caplog) -> None:
    port = free_port()  # nothing listens there

    class Nowhere:
        base_url = f"http://127.0.0.1:{port}"

    exporter = make_exporter(Nowhere, max_retries=0)
    caplog.set_level(logging.INFO)
    poll(exporter, 4)

    lines = failed_poll_lines(caplog)
    assert len(lines) == 3, lines  # the fourth poll is skipped while the circuit is open
    assert all(f"cannot reach 127.0.0.1:{port}: Connection refused" in line for line in lines)
    assert "pausing polls" in lines[2]  # the third in a row opens the circuit, in the same line
    samples = served_samples(exporter)
    assert select(samples, "letta_exporter_poll_failures_total", ("reason",)) == {("unreachable",): 3}
    assert samples[("letta_exporter_circuit_open", ())] == 1


def test_every_failure_reason_is_exposed_at_zero_from_the_start(sim_factory) -> None:
    exporter = make_exporter(sim_factory())
    samples = served_samples(exporter)
    reasons = {labels for (name, labels) in samples if name == "letta_exporter_poll_failures_total"}
    assert {dict(labels)["reason"] for labels in reasons} >= {"unauthorized", "unreachable", "paging"}
