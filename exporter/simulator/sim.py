"""The simulator as tests and benchmarks drive it: a world plus an HTTP server in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from exporter.simulator.faults import Faults
from exporter.simulator.routes import App, RequestRecord, Server
from exporter.simulator.simconfig import SimConfig
from exporter.simulator.truth import TruthRun
from exporter.simulator.world import World


class Simulator:
    def __init__(
        self,
        config: SimConfig | None = None,
        faults: Faults | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Nothing runs yet: the server starts, and the configured arrival rate applies, at start().

        ``clock`` (epoch seconds) is for tests that want to step time instead of sleeping."""
        self.config = config or SimConfig()
        self.world = World(self.config, clock=clock)
        self.app = App(self.world, self.config, faults or Faults())
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._pump: threading.Thread | None = None
        self._stopping = threading.Event()
        self._rate_set = False

    # -- server ----------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Simulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        if not self._rate_set:
            self.set_rate(self.config.runs_per_second)
        self._server = Server((host, port), self.app)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="letta-sim", daemon=True
        )
        self._thread.start()
        self._stopping.clear()
        self._pump = threading.Thread(target=self._pump_loop, name="letta-sim-pump", daemon=True)
        self._pump.start()
        return self

    def _pump_loop(self) -> None:
        # Generation is lazy; ticking often keeps each request's share of it small at 1000 runs/s.
        while not self._stopping.wait(0.1):
            self.world.tick()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        if self._pump is not None:
            self._pump.join(timeout=5)
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = self._pump = None

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- faults and request log ------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.app.picker.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.app.picker.faults = faults

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request received (newest last, the last 200k)."""
        return self.app.requests()

    # -- workload --------------------------------------------------------------------------------

    def set_rate(self, runs_per_second: float) -> None:
        self._rate_set = True
        self.world.set_rate(runs_per_second)

    def add_history(self, count: int, max_age_seconds: float) -> list[str]:
        return self.world.add_history(count, max_age_seconds)

    def burst(self, count: int) -> list[str]:
        return self.world.burst(count)

    def add_stuck(self, count: int) -> list[str]:
        return self.world.add_stuck(count)

    def release_stuck(self) -> None:
        self.world.release_stuck()

    def delete_run(self, run_id: str) -> None:
        self.world.delete_run(run_id)

    def wait_idle(self, timeout: float) -> bool:
        """True once every run so far is terminal, settled and visible (stuck runs never are; with a
        non-zero rate new runs keep coming, so set_rate(0) first)."""
        return self.world.wait_idle(timeout)

    # -- ground truth ----------------------------------------------------------------------------

    def truth(self) -> list[TruthRun]:
        return self.world.truth()

    def truth_totals(self) -> dict[tuple[str, str | None], int]:
        """Terminal runs ever seen (pruned ones included, deleted ones not) by (status, stop_reason)."""
        return self.world.truth_totals()

    def truth_usage_totals(self) -> dict[str, int]:
        """Sums over the same runs: runs, steps, tool_calls and each token type (see truth.USAGE_KEYS)."""
        return self.world.truth_usage_totals()

    def world_size(self) -> int:
        """Runs currently held in memory; bounded when retention_seconds is set."""
        return self.world.size()
