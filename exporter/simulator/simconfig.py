"""Knobs of the simulated Letta server: workload shape and the realism quirks worth testing against."""

from __future__ import annotations

from dataclasses import dataclass

TRACE_MODES = ("501", "rows", "empty")
GENERATIONS = ("spec", "letta-0.16.8", "cloud", "letta-0.11")
STEP_RUN_IDS = ("always", "async_only")
# The shortest run: its steps need distinct microseconds to begin and end in.
MIN_DURATION = 0.001


@dataclass
class SimConfig:
    seed: int = 0
    agents: int = 5
    # Initial arrival rate of new runs (Poisson); Simulator.set_rate changes it while running.
    runs_per_second: float = 0.0
    # Wall-clock lifetime of a run, from created_at to completed_at.
    duration_range: tuple[float, float] = (0.2, 2.0)
    # Letta rows become listable in commit order, not created_at order: this share of runs appears
    # up to ``late_visibility_max`` seconds after its created_at, behind runs created later.
    late_visibility_fraction: float = 0.1
    late_visibility_max: float = 1.5
    # Letta lists a run as terminal a moment before run_metrics (duration, steps) is written.
    write_lag_fraction: float = 0.2
    write_lag_max: float = 0.5
    # When set, every request needs ``Authorization: Bearer <api_key>``.
    api_key: str | None = None
    # "501": /trace answers as a server without ClickHouse (the self-hosted default).
    # "rows": as a server with ClickHouse: otel_traces rows for every finished run whose steps carry a
    # trace_id, [] for the others (see simulator/trace_store.py). "empty": [] for every run.
    trace_mode: str = "501"
    # Letta 0.16.8 leaves ttft_ns null on runs of its current agent loop; the TTFT is then only in
    # the trace (the time_to_first_token span's event, in whole ms). Truth keeps that ms value.
    ttft_in_trace_only: bool = False
    # Runs older than this (and finished) are dropped from memory; truth totals keep counting them.
    retention_seconds: float | None = None
    # Share of runs failing with a stop reason newer than the exporter's enum (pass-through test).
    unknown_stop_reason_fraction: float = 0.02
    # Which Letta the simulator is (facts: generations.md and paging.md of the project's API notes).
    # "spec": the published spec, every endpoint of it, with its cursor meaning (relative to the sort
    # order, as Letta Cloud: with order=desc, after=X lists older runs, before=X newer).
    # "letta-0.16.8": the last self-hosted server, whose run list reads cursors the reverse way in
    # every order (order=desc&before=X lists older runs; order=asc&after=X earlier ones, which is why
    # that capture came back empty), and whose GET /v1/steps/ answers 400 to every request.
    # "cloud": the spec without what Letta Cloud's published reference lacks (/v1/runs/{id}/metrics,
    # /trace, /v1/runs/active answer 404). "letta-0.11": the jobs era (shapes_011.py, routes_011.py).
    generation: str = "spec"
    # run_id on step rows: "always" (0.16.8 fills it for every run), or "async_only", as the spec's
    # description of the field allows ("only included for async calls"): null unless the run is a
    # background one. Letta 0.11's rows carry job_id instead and ignore this.
    step_run_id: str = "always"
    # Stop generating runs (the arrival rate) after this many; None = no limit. Bursts, history and
    # stuck runs do not count. A fixed workload whose truth a test can wait for from outside.
    max_runs: int | None = None

    @property
    def jobs_era(self) -> bool:
        return self.generation == "letta-0.11"

    @property
    def run_extras(self) -> bool:
        """Whether /v1/runs/{id}/metrics, /v1/runs/{id}/trace and /v1/runs/active exist."""
        return self.generation in ("spec", "letta-0.16.8")

    def __post_init__(self) -> None:
        low, high = self.duration_range
        if not MIN_DURATION <= low <= high:
            raise ValueError(
                f"duration_range must satisfy {MIN_DURATION} <= low <= high, got {self.duration_range}"
            )
        if self.agents < 1:
            raise ValueError("agents must be at least 1")
        if self.runs_per_second < 0:
            raise ValueError("runs_per_second must not be negative")
        if self.trace_mode not in TRACE_MODES:
            raise ValueError(f"trace_mode must be one of {TRACE_MODES}, got {self.trace_mode!r}")
        if self.generation not in GENERATIONS:
            raise ValueError(f"generation must be one of {GENERATIONS}, got {self.generation!r}")
        if self.step_run_id not in STEP_RUN_IDS:
            raise ValueError(f"step_run_id must be one of {STEP_RUN_IDS}, got {self.step_run_id!r}")
        if self.max_runs is not None and self.max_runs < 0:
            raise ValueError("max_runs must not be negative")
        if self.retention_seconds is not None and self.retention_seconds <= 0:
            raise ValueError("retention_seconds must be positive")
        for name in ("late_visibility_fraction", "write_lag_fraction", "unknown_stop_reason_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
