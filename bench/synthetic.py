"""Synthetic finished runs in the exact JSON shapes the simulator (and so Letta) serves, for the
in-process memory and /metrics benchmarks, which skip HTTP.

A pool of templates (run list item, /metrics body, /steps body) is taken from an in-process simulator
world; each synthetic run is a template with a fresh run ID, an agent from ``agents`` distinct ones, a
model from ``models`` names and tools from ``tools`` IDs, and its own created_at/completed_at.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.simulator import SimConfig
from exporter.simulator.world import World

# Model names as they appear in Letta step rows; a busy tenant uses a dozen or so.
MODEL_NAMES = (
    "gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "claude-sonnet-4-5", "claude-haiku-4-5",
    "claude-opus-4-1", "gemini-2.5-flash", "gemini-2.5-pro", "llama-3.3-70b", "mistral-large",
)  # fmt: skip
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(us: int, zone: str) -> str:
    moment = EPOCH + timedelta(microseconds=us)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}{zone}"


class Synthetic:
    def __init__(
        self, *, agents: int, models: int = 12, tools: int = 40, pool: int = 1000, seed: int = 0
    ) -> None:
        rng = random.Random(seed)
        world = World(SimConfig(seed=seed, agents=min(agents, 50)))
        world.add_history(pool, 600)
        listed = world.list_runs(limit=1000)[:pool]
        tool_ids = [f"tool-{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in range(tools)]
        self.agent_ids = [f"agent-{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in range(agents)]
        self.templates: list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], int]] = []
        for index, run in enumerate(listed):
            metrics = world.metrics(run["id"]) or {}
            steps = world.steps(run["id"], descending=False, limit=1000) or []
            model = MODEL_NAMES[index % min(models, len(MODEL_NAMES))]
            for step in steps:
                step["model"], step["model_handle"] = model, f"provider/{model}"
            if metrics.get("tools_used"):
                metrics["tools_used"] = rng.sample(tool_ids, len(metrics["tools_used"]))
            created = datetime.fromisoformat(run["created_at"])
            completed = datetime.fromisoformat(run["completed_at"]).replace(tzinfo=UTC)
            duration_us = max(1, int((completed - created).total_seconds() * 1e6))
            self.templates.append((run, metrics, steps, duration_us))
        self._rng = rng

    def make(
        self, index: int, created_us: int
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """Run ``index``: its list item, /metrics body and /steps body (the step dicts are shared)."""
        run, metrics, steps, duration_us = self.templates[index % len(self.templates)]
        run_id = f"run-{uuid.UUID(int=self._rng.getrandbits(128), version=4)}"
        agent_id = self.agent_ids[self._rng.randrange(len(self.agent_ids))]
        run = {
            **run,
            "id": run_id,
            "agent_id": agent_id,
            "created_at": _iso(created_us, "Z"),
            "completed_at": _iso(created_us + duration_us, ""),
        }
        return run, {**metrics, "id": run_id, "agent_id": agent_id}, steps


def outcome_of(
    run_body: dict[str, Any], metrics_body: dict[str, Any], steps_body: list[dict[str, Any]]
) -> Any:
    """The run's outcome, computed as the measured tree computes it: through its figure table, or, in
    trees from before it, from their ``Enrichment``."""
    from exporter.letta.models import Run, RunMetrics, Step
    from exporter.outcome import compute_outcome

    run = Run.model_validate(run_body)
    metrics = RunMetrics.model_validate(metrics_body)
    steps = [Step.model_validate(step) for step in steps_body]
    try:
        from exporter.figures import Reads, Source, resolve
    except ImportError:  # a tree from before the figure table
        from exporter.outcome import Enrichment  # type: ignore[attr-defined]

        return compute_outcome(run, Enrichment(run_metrics=metrics, steps=steps))
    reads = Reads({Source.RUN_METRICS: metrics, Source.STEPS: steps})
    return compute_outcome(run, resolve(run, reads, lambda source: True, may_settle=False) or {})
