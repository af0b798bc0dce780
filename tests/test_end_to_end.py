"""The real exporter process against a faulty Letta-shaped server: counts equal ground truth."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from exporter.simulator import Faults, SimConfig, Simulator
from tests.support import ExporterProcess, assert_matches_truth, select, wait_for

API_KEY = "sk-let-test-9f8e7d6c5b4a39281706"


@pytest.fixture
def faulty_sim():
    faults = Faults(rate_429=0.05, retry_after=0.05, rate_500=0.05, rate_502=0.02, rate_malformed=0.03,
                    rate_slow=0.03, slow_seconds=0.3)  # fmt: skip
    config = SimConfig(seed=11, agents=4, api_key=API_KEY, duration_range=(0.1, 1.5),
                       late_visibility_fraction=0.2, late_visibility_max=1.0, write_lag_fraction=0.3,
                       write_lag_max=0.4)  # fmt: skip
    sim = Simulator(config, faults=faults).start(host="127.0.0.1", port=0)
    yield sim
    sim.stop()


def test_counts_equal_ground_truth_through_faults(faulty_sim: Simulator, tmp_path) -> None:
    sim = faulty_sim
    exporter = ExporterProcess(
        tmp_path,
        [
            "--poll-interval",
            "0.3",
            "--discovery-overlap",
            "5",
            "--max-retries",
            "6",
            "--max-requests-per-second",
            "0",
            "--log-level",
            "debug",
        ],
        env={"LETTA_BASE_URL": sim.base_url, "LETTA_API_KEY": API_KEY},
    ).start()
    try:
        sim.set_rate(60)
        time.sleep(1.0)
        sim.add_stuck(2)
        time.sleep(1.5)
        live = exporter.scrape()
        assert select(live, "letta_active_runs", ("status",)).get(("running",), 0) >= 2
        sim.set_rate(0)
        sim.release_stuck()
        assert sim.wait_idle(30)
        truth = sim.truth()
        assert len(truth) > 80
        samples = exporter.scrape_caught_up(len(truth), timeout=30)
        assert_matches_truth(samples, truth)
        assert select(samples, "letta_active_runs", ("status",)) == {}

        codes = select(samples, "letta_exporter_api_requests_total", ("code",))
        assert codes.get(("429",), 0) > 0 and codes.get(("500",), 0) > 0, codes
        assert sum(select(samples, "letta_exporter_api_malformed_responses_total", ()).values()) > 0
        assert samples[("letta_exporter_up", ())] == 1
    finally:
        code = exporter.stop()
    assert code == 0

    requests = sim.requests
    assert requests and {r.method for r in requests} == {"GET"}
    assert all(r.headers.get("authorization") == f"Bearer {API_KEY}" for r in requests)
    assert all(r.headers.get("user-agent", "").startswith("letta-exporter/") for r in requests)
    logs = exporter.logs()
    assert "retrying" in logs  # debug logging was on, so the faults were logged...
    assert API_KEY not in logs  # ...and the key never was


def test_sigterm_stops_within_five_seconds(faulty_sim: Simulator, tmp_path) -> None:
    exporter = ExporterProcess(
        tmp_path,
        ["--poll-interval", "0.5"],
        env={"LETTA_BASE_URL": faulty_sim.base_url, "LETTA_API_KEY": API_KEY},
    ).start()
    faulty_sim.faults.rate_slow, faulty_sim.faults.slow_seconds = 1.0, 2.0  # a poll is mid-flight
    time.sleep(0.8)
    assert exporter.proc is not None
    started = time.monotonic()
    exporter.proc.send_signal(signal.SIGTERM)
    exporter.proc.wait(timeout=10)
    assert time.monotonic() - started < 5.0
    assert exporter.stop() == 0
    assert "Traceback" not in exporter.logs() and "ERROR" not in exporter.logs()


def test_http_endpoints(faulty_sim: Simulator, tmp_path) -> None:
    exporter = ExporterProcess(
        tmp_path,
        ["--poll-interval", "0.5"],
        env={"LETTA_BASE_URL": faulty_sim.base_url, "LETTA_API_KEY": API_KEY},
    ).start()
    try:
        assert httpx.get(exporter.url + "/healthz").status_code == 200
        assert httpx.get(exporter.url + "/readyz").status_code == 200
        landing = httpx.get(exporter.url + "/")
        assert landing.status_code == 200 and 'href="metrics"' in landing.text
        assert f"<th>Letta</th><td>{faulty_sim.base_url}</td>" in landing.text
        assert "<th>Ready</th><td>yes</td>" in landing.text and " s ago)" in landing.text
        assert API_KEY not in landing.text
        metrics = httpx.get(exporter.url + "/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "letta_exporter_build_info" in metrics.text
        assert "_created" not in metrics.text
        assert httpx.get(exporter.url + "/nope").status_code == 404
        assert httpx.post(exporter.url + "/metrics").status_code == 405
    finally:
        exporter.stop()


def test_readyz_waits_for_the_first_successful_poll(tmp_path) -> None:
    sim = Simulator(SimConfig(seed=3), faults=Faults(rate_500=1.0)).start(host="127.0.0.1", port=0)
    exporter = ExporterProcess(
        tmp_path, ["--poll-interval", "0.3", "--max-retries", "0"], env={"LETTA_BASE_URL": sim.base_url}
    )
    try:
        exporter.start(wait_until="/healthz")
        time.sleep(1.0)  # several failed polls
        assert httpx.get(exporter.url + "/readyz").status_code == 503
        samples = exporter.scrape()
        assert samples[("letta_exporter_up", ())] == 0
        assert select(samples, "letta_exporter_poll_errors_total", ("phase",)).get(("discover",), 0) > 0
        sim.faults.rate_500 = 0.0
        wait_for(lambda: httpx.get(exporter.url + "/readyz").status_code == 200, timeout=10, what="ready")
        assert exporter.scrape()[("letta_exporter_up", ())] == 1
    finally:
        exporter.stop()
        sim.stop()
