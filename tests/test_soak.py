"""Soak: every fault at once plus random SIGKILL restarts; totals still equal ground truth exactly.

Bounded: about 40 s of traffic, under two minutes in all. The seed makes the kill schedule
repeatable; the faults are drawn by the simulator's own seeded generator.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from exporter.simulator import Faults, SimConfig, Simulator
from tests.conftest import GENERATIONS
from tests.support import ExporterProcess, assert_matches_truth, wait_for

# Pure, but tens of seconds long: part of the integration tier (scripts/test.sh), not of plain pytest.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAFFIC_SECONDS = 40.0


@pytest.mark.parametrize("generation", GENERATIONS)
def test_sigkill_restarts_under_every_fault_lose_and_double_count_nothing(tmp_path, generation) -> None:
    rng = random.Random(20261123)
    faults = Faults(rate_429=0.04, retry_after=0.05, rate_500=0.04, rate_502=0.02, rate_malformed=0.03,
                    rate_slow=0.03, slow_seconds=0.4)  # fmt: skip
    config = SimConfig(seed=5, agents=6, duration_range=(0.1, 2.5), late_visibility_fraction=0.2,
                       late_visibility_max=1.0, write_lag_fraction=0.3, write_lag_max=0.4,
                       generation=generation)  # fmt: skip
    sim = Simulator(config, faults=faults).start(host="127.0.0.1", port=0)
    state_file = tmp_path / "state.json"
    # Page size 10: the runs made while the exporter is down span several pages.
    args = ["--poll-interval", "0.3", "--discovery-overlap", "5", "--max-retries", "5", "--page-size",
            "10", "--max-requests-per-second", "0", "--state-file", str(state_file)]  # fmt: skip
    env = {"LETTA_BASE_URL": sim.base_url}
    exporter = ExporterProcess(tmp_path, args, env=env).start()
    kills = 0
    try:
        sim.set_rate(15)
        deadline = time.monotonic() + TRAFFIC_SECONDS
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(1.5, 5.0))
            if rng.random() < 0.3:
                sim.add_stuck(rng.randint(1, 2))
            if rng.random() < 0.3:
                sim.release_stuck()
            assert exporter.proc is not None and exporter.proc.poll() is None, exporter.logs()[-2000:]
            exporter.proc.send_signal(signal.SIGKILL)
            exporter.proc.wait(timeout=5)
            kills += 1
            time.sleep(rng.uniform(0.0, 2.0))  # down for a while: runs keep finishing
            exporter.spawn()  # same port, same state file
            wait_for(lambda: exporter.answers("/healthz"), timeout=20, what="restarted exporter")

        sim.set_rate(0)
        sim.release_stuck()
        assert sim.wait_idle(30)
        truth = sim.truth()
        assert len(truth) > 300
        samples = exporter.scrape_caught_up(len(truth), timeout=60, then=1.5)
        assert_matches_truth(samples, truth)
    finally:
        exporter.stop()
        sim.stop()
    assert kills >= 6
    assert "Traceback" not in exporter.logs()
