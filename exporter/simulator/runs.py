"""One simulated run: its drawn fate, its lifecycle in wall-clock time, and its derived details.

A run keeps only what decides its lifecycle (times, outcome, a few flags) plus a private seed. Steps,
tokens and tools are re-derived from that seed on demand, so a world holding hundreds of thousands
of runs stays small and every derivation of one run gives the same answer.
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from dataclasses import dataclass, replace

from exporter.simulator.simconfig import SimConfig

US_PER_S = 1_000_000
UNKNOWN_STOP_REASONS = ("quota_exhausted", "tool_execution_timeout")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    provider: str
    endpoint: str
    context_window: int
    reasons: bool  # emits reasoning tokens
    api_name: str  # as Letta names the upstream in its error messages

    @property
    def handle(self) -> str:
        return f"{self.provider}/{self.name}"


MODELS = (
    ModelSpec("gpt-4o-mini", "openai", "https://api.openai.com/v1", 128000, False, "OpenAI"),
    ModelSpec("claude-sonnet-4-5", "anthropic", "https://api.anthropic.com/v1", 200000, True, "Anthropic"),
    ModelSpec(
        "gemini-2.5-flash",
        "google_ai",
        "https://generativelanguage.googleapis.com",
        1048576,
        True,
        "Google AI",
    ),
)

AGENT_ROLES = ("support-bot", "research-agent", "sales-assistant", "triage-bot", "ops-helper")


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    name: str
    created_us: int
    model: ModelSpec


def make_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_agents(config: SimConfig, now_us: int) -> list[Agent]:
    # A separate stream, so the same seed gives the same agents whatever else is drawn.
    rng = random.Random(f"agents-{config.seed}")
    agents = []
    for index in range(config.agents):
        agents.append(
            Agent(
                id=f"agent-{make_uuid(rng)}",
                name=f"{AGENT_ROLES[index % len(AGENT_ROLES)]}-{index + 1}",
                created_us=now_us - rng.randint(1, 30 * 86400) * US_PER_S,
                model=MODELS[index % len(MODELS)],
            )
        )
    return agents


# Letta's built-in tools, as an agent's runs report them in /metrics tools_used (by ID).
TOOL_NAMES = ("send_message", "web_search", "fetch_webpage", "run_code", "conversation_search",
              "archival_memory_search", "memory_insert", "memory_replace")  # fmt: skip


def make_tools(config: SimConfig) -> tuple[str, ...]:
    rng = random.Random(f"tools-{config.seed}")
    return tuple(f"tool-{make_uuid(rng)}" for _ in TOOL_NAMES)


# (status, stop_reason, weight); stop_reason "?" stands for a reason Letta may add later.
BASE_OUTCOMES: tuple[tuple[str, str | None, float], ...] = (
    ("completed", "end_turn", 0.70),
    ("completed", "max_steps", 0.05),
    ("completed", "requires_approval", 0.02),
    ("failed", "llm_api_error", 0.08),
    ("failed", None, 0.04),
    ("failed", "error", 0.03),
    ("cancelled", "cancelled", 0.03),
)
# Letta 0.11 (the jobs era): the stop reason lives on the steps only, from its smaller enum (no
# llm_api_error: an upstream 500 fails the step with "error", as captured); a run can also expire.
JOBS_ERA_OUTCOMES: tuple[tuple[str, str | None, float], ...] = (
    ("completed", "end_turn", 0.72),
    ("completed", "max_steps", 0.05),
    ("completed", "requires_approval", 0.02),
    ("failed", "error", 0.12),
    ("cancelled", "cancelled", 0.03),
    ("expired", None, 0.02),
)
JOBS_ERA_PENDING_FRACTION = 0.1  # synchronous runs shown "pending", not "created", while in flight


def outcome_table(
    unknown_fraction: float, base: tuple[tuple[str, str | None, float], ...] = BASE_OUTCOMES
) -> tuple[list[tuple[str, str | None]], list[float]]:
    outcomes = [(status, reason) for status, reason, _ in base]
    weights = [weight for _, _, weight in base]
    outcomes.append(("failed", "?"))
    weights.append(unknown_fraction)
    outcomes.append(("completed", "end_turn"))
    weights.append(max(0.0, 1.0 - sum(weights)))
    return outcomes, weights


@dataclass(slots=True, eq=False)
class SimRun:
    id: str
    agent: Agent
    seed: int
    status: str  # the final status; status_at() gives the one at a moment
    stop_reason: str | None
    refused: bool  # a background run refused at once (no Redis): no steps, like the capture
    created_us: int
    start_us: int  # created -> running
    visible_us: int  # listable from here (commit time)
    end_us: int | None  # terminal from here (== completed_at); None while stuck
    settle_lag_us: int  # duration and metrics are written this long after end_us
    run_ns_extra: int  # run_ns - (completed_at - created_at): tens of ms, as on the real server
    run_start_offset_ns: int
    ttft_frac: float | None
    background: bool
    streaming: bool
    conversation_id: str | None
    callback_url: str | None
    callback_status_code: int | None
    callback_error: str | None
    # The status between start_us and end_us. Letta 0.11 keeps synchronous runs "created" (or
    # "pending") until they end; only streamed and background runs go "running".
    in_flight: str = "running"
    stuck: bool = False
    visible: bool = False
    counted: bool = False  # in truth: terminal and visible
    done: bool = False  # terminal, settled and visible
    deleted: bool = False

    @property
    def key(self) -> tuple[int, str]:
        return (self.created_us, self.id)

    def terminal_at(self, now_us: int) -> bool:
        return self.end_us is not None and now_us >= self.end_us

    def settled_at(self, now_us: int) -> bool:
        return self.end_us is not None and now_us >= self.end_us + self.settle_lag_us

    def status_at(self, now_us: int) -> str:
        if self.end_us is not None and now_us >= self.end_us:
            return self.status
        return "created" if now_us < self.start_us else self.in_flight

    @property
    def run_ns(self) -> int | None:
        if self.end_us is None:
            return None
        return (self.end_us - self.created_us) * 1000 + self.run_ns_extra

    @property
    def ttft_ns(self) -> int | None:
        run_ns = self.run_ns
        if run_ns is None or self.ttft_frac is None:
            return None
        return int(run_ns * self.ttft_frac)


class RunFactory:
    """Draws new runs from the world's RNG; every draw happens under the world lock."""

    def __init__(self, config: SimConfig, rng: random.Random, agents: list[Agent]) -> None:
        self.config = config
        self.rng = rng
        self.agents = agents
        self.jobs_era = config.generation == "letta-0.11"
        # A 0.11 server can only say the stop reasons of its own enum: none newer comes from it.
        base = JOBS_ERA_OUTCOMES if self.jobs_era else BASE_OUTCOMES
        unknown = 0.0 if self.jobs_era else config.unknown_stop_reason_fraction
        self.outcomes, weights = outcome_table(unknown, base)
        self.cum_weights = [sum(weights[: i + 1]) for i in range(len(weights))]

    def duration_us(self, refused: bool) -> int:
        low, high = self.config.duration_range
        if refused:
            # Refused at once: as short as a run gets.
            return int(low * US_PER_S)
        # Log-uniform: many short runs, a long tail, as agent runs look.
        seconds = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        return max(1, int(seconds * US_PER_S))

    def new_run(self, created_us: int, *, history: bool = False, stuck: bool = False) -> SimRun:
        rng, config = self.rng, self.config
        run_id = f"run-{make_uuid(rng)}"
        agent = rng.choice(self.agents)
        status, stop_reason = rng.choices(self.outcomes, cum_weights=self.cum_weights)[0]
        if stop_reason == "?":
            stop_reason = rng.choice(UNKNOWN_STOP_REASONS)
        # A stuck run is under way, so never one refused at once.
        refused = status == "failed" and stop_reason is None and rng.random() < 0.5 and not stuck
        duration = self.duration_us(refused)
        if history:
            # Already past: immediately visible and settled.
            visible_lag = settle_lag = 0
        else:
            visible_lag = settle_lag = 0
            if rng.random() < config.late_visibility_fraction:
                visible_lag = int(rng.uniform(0.0, config.late_visibility_max) * US_PER_S)
            if rng.random() < config.write_lag_fraction:
                settle_lag = int(rng.uniform(0.02, max(0.02, config.write_lag_max)) * US_PER_S)
        has_callback = rng.random() < 0.10
        callback_roll = rng.random()
        run = SimRun(
            id=run_id,
            agent=agent,
            seed=rng.getrandbits(64),
            status=status,
            stop_reason=stop_reason,
            refused=refused,
            created_us=created_us,
            start_us=created_us + duration // 20,
            visible_us=created_us + visible_lag,
            end_us=None if stuck else created_us + duration,
            settle_lag_us=settle_lag,
            run_ns_extra=int(rng.uniform(0.02, 0.08) * 1e9),
            run_start_offset_ns=int(rng.uniform(0.005, 0.05) * 1e9),
            ttft_frac=None if rng.random() < 0.4 else rng.uniform(0.05, 0.6),
            background=refused or rng.random() < 0.05,
            streaming=rng.random() < 0.5,
            conversation_id=f"conv-{make_uuid(rng)}" if rng.random() < 0.1 else None,
            callback_url=f"https://hooks.example.com/letta/{agent.name}" if has_callback else None,
            callback_status_code=None,
            callback_error=None,
            stuck=stuck,
        )
        if refused:
            run.ttft_frac = None
        if has_callback:
            if callback_roll < 0.8:
                run.callback_status_code = 200
            elif callback_roll < 0.9:
                run.callback_status_code = 500
            else:
                run.callback_error = "ConnectError: [Errno 111] Connection refused"
        if self.jobs_era:
            self._as_jobs_era(run)
        return run

    def _as_jobs_era(self, run: SimRun) -> None:
        """What Letta 0.11 could record of the run drawn: no TTFT, no conversations; a background run
        (``/messages/async``) ends completed or failed whatever its stop reason, and only it takes a
        callback URL."""
        run.ttft_frac = None
        run.conversation_id = None
        if run.status not in ("completed", "failed"):
            run.background = False
        if not run.background:
            run.callback_url = run.callback_status_code = run.callback_error = None
        if not (run.background or run.streaming):
            pending = self.rng.random() < JOBS_ERA_PENDING_FRACTION
            run.in_flight = "pending" if pending else "created"


# -- details derived from a run's seed -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepData:
    id: str
    model: ModelSpec
    status: str
    stop_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    # None means the whole *_tokens_details object is null, as on failed steps.
    cached_tokens: int | None
    cache_read_tokens: int | None
    cache_creation_tokens: int | None  # may be null inside a present details object (capture)
    has_prompt_details: bool
    reasoning_tokens: int | None
    error_type: str | None
    error_message: str | None
    trace_id: str | None
    # The row exists (pending, zero usage) from start_us and is final from end_us; None: not yet
    # known (a stuck run has begun its first step only).
    start_us: int | None = None
    end_us: int | None = None

    def final_at(self, now_us: int) -> bool:
        return self.end_us is not None and now_us >= self.end_us

    def at(self, now_us: int) -> StepData:
        """The row as read at ``now_us``: before its end, pending with zero usage and no stop reason
        (Letta writes it so before the model call and fills it in afterwards)."""
        if self.final_at(now_us):
            return self
        return replace(
            self, status="pending", stop_reason=None, prompt_tokens=0, completion_tokens=0,
            cached_tokens=None, cache_read_tokens=None, cache_creation_tokens=None,
            has_prompt_details=False, reasoning_tokens=None, error_type=None, error_message=None,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunDetails:
    steps: tuple[StepData, ...]
    tools_used: tuple[str, ...] | None


STEP_COUNT_WEIGHTS = (40, 25, 15, 10, 6, 4)  # 1..6 steps
STEP_TIMES_SALT = 0x5EED_71AE  # step timings draw from their own stream, apart from the tokens


def upstream_500(model: ModelSpec) -> str:
    return (
        f"INTERNAL_SERVER_ERROR: {model.api_name} API error: Error code: 500 - "
        "{'error': {'message': 'upstream exploded', 'type': 'server_error'}}"
    )


RAW_500 = "Error code: 500 - {'error': {'message': 'upstream exploded', 'type': 'server_error'}}"
REDIS_REFUSAL = (
    "INTERNAL_SERVER_ERROR: Background streaming requires Redis to be running. Please ensure Redis is "
    "properly configured. LETTA_REDIS_HOST: None, LETTA_REDIS_PORT: 6379"
)


def failure(run: SimRun) -> tuple[str, str]:
    """(error_type, message) of the step that failed a failed run."""
    model = run.agent.model
    if run.stop_reason == "llm_api_error":
        return "LLMServerError", upstream_500(model)
    if run.stop_reason is None:
        return "InternalServerError", RAW_500
    if run.stop_reason == "error":
        return "ValueError", "Failed to parse tool call arguments as JSON"
    return "LettaError", f"Run stopped: {run.stop_reason}"


def step_times(run: SimRun, count: int) -> list[tuple[int | None, int | None]]:
    """(start, end) of each step: one after another from the moment the run starts to the moment it
    ends, so created <= start < end <= completed_at and every step is final once the run is terminal.
    A run with no end yet (stuck) has begun its first step only; its start does not depend on the
    end, so it stays put when the run is released."""
    if count == 0:
        return []
    begin = run.start_us
    if run.end_us is None:
        return [(begin, None)] + [(None, None)] * (count - 1)
    rng = random.Random(run.seed ^ STEP_TIMES_SALT)
    span = run.end_us - begin
    bounds = [begin]
    for cut in sorted(begin + int(rng.random() * span) for _ in range(count - 1)):
        bounds.append(max(cut, bounds[-1] + 1))  # strictly increasing: each step has start < end
    bounds.append(run.end_us)
    return list(itertools.pairwise(bounds))


def _step_count(run: SimRun, rng: random.Random) -> int:
    if run.refused:
        return 0
    if run.stop_reason == "max_steps":
        return rng.randint(7, 10)
    return rng.choices(range(1, 7), weights=STEP_COUNT_WEIGHTS)[0]


Times = tuple[int | None, int | None]


def _failed_step(run: SimRun, step_id: str, trace_id: str | None, jobs_era: bool, times: Times) -> StepData:
    # Letta 0.11 records an upstream failure as an unknown error (run_failed_steps.json).
    error_type, message = ("Unknown", "Unknown error") if jobs_era else failure(run)
    return StepData(
        id=step_id,
        model=run.agent.model,
        status="failed",
        stop_reason=run.stop_reason or "error",
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=None,
        cache_read_tokens=None,
        cache_creation_tokens=None,
        has_prompt_details=False,
        reasoning_tokens=None,
        error_type=error_type,
        error_message=message,
        trace_id=trace_id,
        start_us=times[0],
        end_us=times[1],
    )


def _done_step(
    run: SimRun,
    rng: random.Random,
    step_id: str,
    tokens: tuple[int, int],
    last: bool,
    trace_id: str | None,
    times: Times,
) -> StepData:
    model = run.agent.model
    prompt, completion = tokens
    has_prompt_details = rng.random() < 0.9
    cached = read = creation = None
    if has_prompt_details:
        cached = 128 * rng.randint(1, prompt // 128) if rng.random() < 0.5 else 0
        read = cached
        if model.provider == "anthropic":
            creation = rng.randint(100, 1500) if rng.random() < 0.4 else 0
        else:
            # OpenAI leaves it null inside the object at times (seen in the capture).
            creation = None if rng.random() < 0.3 else 0
    reasoning = None
    if rng.random() < 0.9:
        reasoning = rng.randint(1, completion) if model.reasons and rng.random() < 0.5 else 0
    if last:
        status = "cancelled" if run.status == "cancelled" else "success"
        stop_reason = run.stop_reason
    else:
        status, stop_reason = "success", None
    return StepData(
        id=step_id,
        model=model,
        status=status,
        stop_reason=stop_reason,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_read_tokens=read,
        cache_creation_tokens=creation,
        has_prompt_details=has_prompt_details,
        reasoning_tokens=reasoning,
        error_type=None,
        error_message=None,
        trace_id=trace_id,
        start_us=times[0],
        end_us=times[1],
    )


def _as_jobs_era(steps: list[StepData]) -> list[StepData]:
    """Letta 0.11's rows: no token details at all, and on a run of several steps that ends well the
    last row holds the run's cumulative usage (real_0.11.7 run2: 908/12, then 1984/24), so /usage,
    the sum of the rows, counts the earlier steps twice."""
    rows = [
        replace(step, cached_tokens=None, cache_read_tokens=None, cache_creation_tokens=None,
                has_prompt_details=False, reasoning_tokens=None)
        for step in steps
    ]  # fmt: skip
    if len(rows) > 1 and rows[-1].status == "success":
        rows[-1] = replace(
            rows[-1],
            prompt_tokens=sum(row.prompt_tokens for row in rows),
            completion_tokens=sum(row.completion_tokens for row in rows),
        )
    return rows


def derive_details(run: SimRun, tools: tuple[str, ...], *, jobs_era: bool = False) -> RunDetails:
    """The run's step rows as the server finally holds them (``jobs_era``: Letta 0.11's), with the
    moment each begins and ends, and the tools it used."""
    rng = random.Random(run.seed)
    count = _step_count(run, rng)
    trace_id = f"{rng.getrandbits(128):032x}" if rng.random() < 0.5 else None
    base_prompt = rng.randint(700, 3000)
    steps = []
    for index, times in enumerate(step_times(run, count)):
        step_id = f"step-{make_uuid(rng)}"
        last = index == count - 1
        tokens = (base_prompt + index * rng.randint(60, 400), rng.randint(8, 400))
        if last and run.status == "failed":
            steps.append(_failed_step(run, step_id, trace_id, jobs_era, times))
        else:
            steps.append(_done_step(run, rng, step_id, tokens, last, trace_id, times))
    if jobs_era:
        steps = _as_jobs_era(steps)
    tools_used = None
    if count > 1:
        tools_used = tuple(rng.sample(tools, rng.randint(1, min(3, count - 1))))
    return RunDetails(steps=tuple(steps), tools_used=tools_used)
