"""State that survives restarts: tracker progress and run-outcome counter totals, in one file.

Both halves are written together, atomically (temp file, fsync, rename, fsync the directory), at
the end of a tick and on shutdown. A crash mid-tick therefore rolls back to the previous tick's
file, where the runs recorded since are neither in the counters nor in the dedupe set: they are
counted again, once. That is the whole exactly-once argument for restarts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from prometheus_client.metrics import Counter, Histogram, MetricWrapperBase

from exporter.letta.models import Run
from exporter.metrics import ExporterMetrics
from exporter.tracker import PendingRun, RunTracker, created_ts

log = logging.getLogger(__name__)

STATE_VERSION = 2  # 2: runs in flight as {id: created_at}; 1 (whole runs) is still read


class StateError(Exception):
    pass


def _outcome_metrics(metrics: ExporterMetrics) -> dict[str, MetricWrapperBase]:
    return {
        "runs": metrics.runs,
        "ttft": metrics.ttft,
        "duration": metrics.duration,
        "steps_per_run": metrics.steps_per_run,
        "run_tokens": metrics.run_tokens,
        "step_tokens": metrics.step_tokens,
        "steps": metrics.steps,
        "tool_calls": metrics.tool_calls,
        "callbacks": metrics.callbacks,
    }


def _children(metric: MetricWrapperBase) -> dict[tuple[str, ...], Any]:
    # prometheus-client keeps labelled children in _metrics; there is no public iterator over them.
    if not metric._labelnames:  # type: ignore[attr-defined]
        return {(): metric}
    return dict(metric._metrics)  # type: ignore[attr-defined]


def _dump_metric(metric: MetricWrapperBase) -> list[dict[str, Any]]:
    rows = []
    for labels, child in _children(metric).items():
        if isinstance(metric, Histogram):
            buckets = [bucket.get() for bucket in child._buckets]
            if not any(buckets):
                continue
            rows.append({"labels": list(labels), "buckets": buckets, "sum": child._sum.get()})
        elif isinstance(metric, Counter):
            value = child._value.get()
            if value:
                rows.append({"labels": list(labels), "value": value})
    return rows


def _check_metric(metric: MetricWrapperBase, rows: list[dict[str, Any]]) -> None:
    """Everything that could make loading fail half-way, checked before anything is loaded."""
    arity = len(metric._labelnames)  # type: ignore[attr-defined]
    layout = len(metric._upper_bounds) if isinstance(metric, Histogram) else None  # type: ignore[attr-defined]
    for row in rows:
        if len(row["labels"]) != arity:
            raise StateError(f"{metric._name}: label set changed since the state was written")  # type: ignore[attr-defined]
        if layout is not None and len(row["buckets"]) != layout:
            raise StateError(f"{metric._name}: buckets changed since the state was written")  # type: ignore[attr-defined]
        if layout is None and not isinstance(row["value"], int | float):
            raise StateError(f"{metric._name}: bad value")  # type: ignore[attr-defined]


def _load_metric(metric: MetricWrapperBase, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        child = metric.labels(*row["labels"]) if row["labels"] else metric
        if isinstance(metric, Histogram):
            for bucket, count in zip(child._buckets, row["buckets"], strict=True):
                bucket.inc(count)
            child._sum.inc(row["sum"])
        else:
            child.inc(row["value"])


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
        "metrics": {name: _dump_metric(metric) for name, metric in _outcome_metrics(metrics).items()},
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
        watermark = data["watermark"]
        finalised = {str(k): float(v) for k, v in data["finalised"].items()}
        in_flight = _in_flight(data["in_flight"], state["version"])
        pending = [Run.model_validate(item) for item in data["pending"]]
        agents = [str(agent) for agent in state["agents"]]
        metric_rows = state["metrics"]
        baselined = bool(state["baselined"])
        if watermark is not None:
            watermark = float(watermark)
        outcome_metrics = _outcome_metrics(metrics)
        for name, metric in outcome_metrics.items():
            _check_metric(metric, metric_rows.get(name, []))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"malformed state: {type(exc).__name__}: {exc}") from None

    for agent in agents:
        metrics.agent(agent)
    for name, metric in outcome_metrics.items():
        _load_metric(metric, metric_rows.get(name, []))
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
