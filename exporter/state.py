"""State that survives restarts: tracker progress and run-outcome counter totals, in one file,
written together and atomically at the end of a tick and on shutdown, so a crash rolls back to the
last tick's file, whose runs are counted again once (docs/architecture.md, "Exactly once").
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from exporter import families as f
from exporter.letta.models import Run
from exporter.prometheus import ExporterMetrics
from exporter.totals import TotalsError
from exporter.tracker import PendingRun, RunTracker, created_ts

log = logging.getLogger(__name__)

STATE_VERSION = 2  # 2: runs in flight as {id: created_at}; 1 (whole runs) is still read
# Version 1 named the outcome families by their attribute on ExporterMetrics.
OLD_NAMES = {old: family.name for old, family in {
    "runs": f.RUNS, "ttft": f.TTFT, "duration": f.DURATION, "steps_per_run": f.STEPS,
    "run_tokens": f.RUN_TOKENS, "step_tokens": f.STEP_TOKENS, "steps": f.STEP_COUNTS,
    "tool_calls": f.TOOL_CALLS, "callbacks": f.CALLBACKS,
}.items()}  # fmt: skip


class StateError(Exception):
    pass


def capture(tracker: RunTracker, metrics: ExporterMetrics, *, baselined: bool) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "written_at": time.time(),
        "baselined": baselined,
        "tracker": {
            "watermark": tracker.watermark,
            "finalised": tracker.finalised,
            "in_flight": tracker.in_flight,
            "pending": [entry.run.model_dump(mode="json") for entry in tracker.pending.values()],
        },
        "agents": metrics.agents.admitted,
        "metrics": metrics.totals.dump(),
    }


def restore(state: dict[str, Any], tracker: RunTracker, metrics: ExporterMetrics) -> bool:
    """Load ``state`` into a fresh tracker and metrics; returns whether the poller was baselined.

    Validates everything before touching the metrics, so a bad file leaves them untouched."""
    if not isinstance(state, dict) or state.get("version") not in (1, STATE_VERSION):
        raise StateError(
            f"unsupported state version {state.get('version') if isinstance(state, dict) else '?'}"
        )
    try:
        data = state["tracker"]
        watermark = None if data["watermark"] is None else float(data["watermark"])
        finalised = {str(k): float(v) for k, v in data["finalised"].items()}
        in_flight = _in_flight(data["in_flight"], state["version"])
        pending = [Run.model_validate(item) for item in data["pending"]]
        agents = [str(agent) for agent in state["agents"]]
        metric_rows = state["metrics"]
        baselined = bool(state["baselined"])
        if not isinstance(metric_rows, dict):
            raise TypeError("metrics is not an object")
        # Old files name the families by attribute ("runs"), new ones as exposed ("letta_runs").
        metric_rows = {OLD_NAMES.get(name, name): rows for name, rows in metric_rows.items()}
        metrics.totals.load(metric_rows)  # checks everything before it adds anything
        for agent in agents:
            metrics.agent(agent)
    except TotalsError as exc:
        raise StateError(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"malformed state: {type(exc).__name__}: {exc}") from None

    tracker.watermark = watermark
    tracker.finalised = finalised
    tracker.in_flight = in_flight
    tracker.pending = {run.id: PendingRun(run) for run in pending}
    return baselined


def _in_flight(saved: Any, version: int) -> dict[str, float]:
    if version == 1:  # whole runs
        runs = [Run.model_validate(item) for item in saved]
        return {run.id: created_ts(run) or time.time() for run in runs}
    return {str(run_id): float(created) for run_id, created in saved.items()}


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is none yet. Raises StateError when unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read: {exc.strerror}") from None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise StateError(f"not valid JSON ({exc})") from None

    def quarantine(self) -> Path | None:
        """Move an unreadable file aside (kept for a post-mortem) so the exporter can start fresh."""
        target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, target)
        except OSError:
            return None
        return target

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        data = json.dumps(state, separators=(",", ":")).encode()
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
