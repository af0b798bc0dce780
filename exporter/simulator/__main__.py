"""``python -m exporter.simulator``: serve a simulated Letta until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from exporter.simulator.faults import Faults
from exporter.simulator.sim import Simulator
from exporter.simulator.simconfig import GENERATIONS, STEP_RUN_IDS, TRACE_MODES, SimConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m exporter.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8283)
    parser.add_argument("--rate", type=float, default=2.0, help="new runs per second")
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration-min", type=float, default=0.2, help="shortest run, seconds")
    parser.add_argument("--duration-max", type=float, default=2.0, help="longest run, seconds")
    parser.add_argument("--max-runs", type=int, default=None, help="stop generating runs after this many")
    parser.add_argument("--history", type=int, default=0, help="finished runs to create at start")
    parser.add_argument("--history-age", type=float, default=3600.0, help="their maximum age, seconds")
    parser.add_argument("--retention", type=float, default=None, help="forget finished runs after seconds")
    parser.add_argument("--api-key", default=None, help="require Authorization: Bearer <key>")
    parser.add_argument("--generation", choices=GENERATIONS, default="spec", help="which Letta to be")
    parser.add_argument("--step-run-id", choices=STEP_RUN_IDS, default="always", help="run_id on step rows")
    parser.add_argument("--trace-mode", choices=TRACE_MODES, default="501", help="how /trace answers")
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=0.1)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-502", type=float, default=0.0)
    parser.add_argument("--rate-malformed", type=float, default=0.0)
    parser.add_argument("--rate-slow", type=float, default=0.0)
    parser.add_argument("--slow-seconds", type=float, default=0.5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = SimConfig(
            seed=args.seed,
            agents=args.agents,
            runs_per_second=args.rate,
            duration_range=(args.duration_min, args.duration_max),
            api_key=args.api_key,
            retention_seconds=args.retention,
            generation=args.generation,
            step_run_id=args.step_run_id,
            trace_mode=args.trace_mode,
            max_runs=args.max_runs,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    faults = Faults(
        rate_429=args.rate_429,
        retry_after=args.retry_after,
        rate_500=args.rate_500,
        rate_502=args.rate_502,
        rate_malformed=args.rate_malformed,
        rate_slow=args.rate_slow,
        slow_seconds=args.slow_seconds,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim = Simulator(config, faults)
    if args.history:
        sim.add_history(args.history, args.history_age)
    sim.start(args.host, args.port)
    print(sim.base_url, flush=True)
    try:
        # A timeout keeps the main thread responsive to signals on every platform.
        while not stopping.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
