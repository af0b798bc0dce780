"""Every figure a finished run contributes, declared once with its sources in the order that wins.

Letta's servers do not all say the same things in the same places (docs/servers.md has the table
this declares). So each figure lists where it can come from, best first, and the first source that
gives a value wins; a source is read only while some figure still needs it, and a missing endpoint
just moves each figure on to its next source. Adding a source or a server generation is a row here.

A ``late`` source is one Letta can list empty a moment before it writes it (a run listed finished
before its duration): while a run may still be looked at again, an empty late source holds its
figure back instead of letting a weaker source win (``resolve`` answers ``SETTLE``).

Pure: the enrichment workers do the reading (exporter/enrichment.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from exporter.letta.models import Run, Step, UsageStatistics

TOKEN_TYPES = ("prompt", "completion", "cached", "cache_read", "cache_creation", "reasoning")
# Token types that count some of the same tokens, so a sum over ``type`` must never include both of a
# pair: cached, cache_read and cache_creation are parts of prompt (Letta counts cache reads and writes
# into prompt_tokens), reasoning is part of completion, and cached and cache_read are two names for
# the same cache reads (Letta fills both from one figure; older releases one or the other by provider).
OVERLAPPING_TOKEN_TYPES = frozenset(
    frozenset(pair)
    for pair in (
        ("prompt", "cached"),
        ("prompt", "cache_read"),
        ("prompt", "cache_creation"),
        ("completion", "reasoning"),
        ("cached", "cache_read"),
    )
)


class Source(StrEnum):
    RUN = "run"  # the run as listed: costs nothing more
    STEPS = "steps"  # its steps: from the steps stream, else /v1/runs/{id}/steps
    RUN_METRICS = "metrics"  # Letta's run metrics, /v1/runs/{id}/metrics
    USAGE = "usage"  # /v1/runs/{id}/usage
    TRACE = "trace"  # /v1/runs/{id}/trace: TTFT from its time_to_first_token span


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


# A source read (or skipped: switched off, missing on this server, given up) that gave nothing.
NOTHING: Final = _Nothing()


@dataclass
class Reads:
    """A run's sources read so far: a source absent from ``data`` has not been read."""

    data: dict[Source, Any] = field(default_factory=dict)
    # /trace rows (ClickHouse otel_traces columns) for trace export: [] when Letta has no trace for
    # the run, None when not read (not exported, no trace storage, or not yet).
    trace_rows: list[dict[str, Any]] | None = None

    def get(self, source: Source) -> Any:
        """The source's data, or None when it is not read or gave nothing."""
        data = self.data.get(source, NOTHING)
        return None if data is NOTHING else data

    @property
    def steps(self) -> list[Step] | None:
        return self.get(Source.STEPS)


@dataclass(frozen=True)
class Take:
    source: Source
    what: str  # in words, for docs/servers.md and the log
    value: Callable[[Run, Any], Any]  # (the run, the source's data) -> the figure, or None
    late: bool = False
    # Read the source for this figure only when this holds (each read is an API call).
    only_if: Callable[[Reads], bool] | None = None


@dataclass(frozen=True)
class Figure:
    name: str
    takes: tuple[Take, ...]


def wall_clock_ns(run: Run) -> int | None:
    if run.created_at is None or run.completed_at is None:
        return None
    ns = round((run.completed_at - run.created_at).total_seconds() * 1e9)
    return ns if ns >= 0 else None


def steps_agent(steps: list[Step]) -> str | None:
    """The agent the steps name, when they agree (a run belongs to one agent)."""
    agents = {step.agent_id for step in steps if step.agent_id}
    return agents.pop() if len(agents) == 1 else None


def steps_stop_reason(steps: list[Step]) -> str | None:
    """The run's stop reason as its steps tell it: Letta writes one on the step that ended the run (and
    none on the steps before), so the one step that has one. Should several disagree, a failed or
    cancelled step's wins, then the last step's in the order read (oldest first where the server
    honours the order)."""
    reasons = [step for step in steps if step.stop_reason]
    if len({step.stop_reason for step in reasons}) <= 1:
        return reasons[0].stop_reason if reasons else None
    ended = [step for step in reasons if step.status in ("failed", "cancelled")]
    return (ended or reasons)[-1].stop_reason


def usage_tokens(usage: UsageStatistics | Step) -> dict[str, int]:
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    return {
        "prompt": usage.prompt_tokens or 0,
        "completion": usage.completion_tokens or 0,
        "cached": (prompt.cached_tokens if prompt else None) or 0,
        "cache_read": (prompt.cache_read_tokens if prompt else None) or 0,
        "cache_creation": (prompt.cache_creation_tokens if prompt else None) or 0,
        "reasoning": (completion.reasoning_tokens if completion else None) or 0,
    }


def step_tokens(step: Step) -> dict[str, int]:
    """A step's tokens by type: as /usage gives them, where the ``*_details`` objects are empty
    from the flat fields, since Letta fills one or the other."""
    tokens = usage_tokens(step)
    tokens["cached"] = tokens["cached"] or step.cached_input_tokens or 0
    tokens["cache_creation"] = tokens["cache_creation"] or step.cache_write_tokens or 0
    tokens["reasoning"] = tokens["reasoning"] or step.reasoning_tokens or 0
    return tokens


def summed_tokens(steps: Iterable[Step]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for step in steps:
        total.update(step_tokens(step))
    return {token_type: total[token_type] for token_type in TOKEN_TYPES}


Callback = StrEnum("Callback", "SUCCESS FAILURE")  # letta_run_callbacks_total{outcome}: "success", "failure"


def callback_outcome(run: Run) -> str | None:
    if not run.callback_url:
        return None
    if run.callback_error:
        return Callback.FAILURE
    if run.callback_status_code is not None:
        return Callback.SUCCESS if 200 <= run.callback_status_code < 300 else Callback.FAILURE
    return None


def _steps_name_a_trace(reads: Reads) -> bool:
    # Steps name their trace when Letta traced the run (null on a server without tracing); without
    # steps to go by, only /trace can tell.
    steps = reads.steps
    return steps is None or any(step.trace_id for step in steps)


RUN, STEPS, RUN_METRICS, USAGE, TRACE = Source  # the table below reads better without the prefix

FIGURES: tuple[Figure, ...] = (
    Figure("agent_id", (
        Take(RUN, "the run's agent_id", lambda run, _: run.agent_id),
        Take(RUN, "the run's metadata.agent_id", lambda run, _: run.metadata_agent_id),
        Take(STEPS, "the steps' agent_id", lambda _, steps: steps_agent(steps)),
    )),
    Figure("stop_reason", (
        Take(RUN, "the run's stop_reason", lambda run, _: run.stop_reason),
        Take(STEPS, "the step that has one", lambda _, steps: steps_stop_reason(steps)),
    )),
    Figure("duration_ns", (
        Take(RUN, "the run's total_duration_ns", lambda run, _: run.total_duration_ns, late=True),
        Take(RUN_METRICS, "/metrics run_ns", lambda _, metrics: metrics.run_ns, late=True),
        Take(RUN, "the run's completed_at - created_at", lambda run, _: wall_clock_ns(run)),
    )),
    # The steps are read for the tokens anyway, so their count costs nothing; /metrics' num_steps
    # says the same where there are no steps to count.
    Figure("num_steps", (
        Take(STEPS, "the number of steps", lambda _, steps: len(steps)),
        Take(RUN_METRICS, "/metrics num_steps", lambda _, metrics: metrics.num_steps),
    )),
    Figure("steps", (Take(STEPS, "the steps (per model: tokens, outcomes)", lambda _, steps: steps),)),
    Figure("tokens", (
        Take(STEPS, "the steps' sum", lambda _, steps: summed_tokens(steps)),
        Take(USAGE, "/usage", lambda _, usage: usage_tokens(usage)),
    )),
    Figure("tools", (Take(RUN_METRICS, "/metrics tools_used", lambda _, metrics: metrics.tools_used),)),
    Figure("ttft_ns", (
        Take(RUN, "the run's ttft_ns", lambda run, _: run.ttft_ns),
        Take(TRACE, "/trace's time_to_first_token span", lambda _, ttft: ttft,
             only_if=_steps_name_a_trace),
    )),
    Figure("callback", (Take(RUN, "the run's callback_*", lambda run, _: callback_outcome(run)),)),
)  # fmt: skip
BY_NAME = {figure.name: figure for figure in FIGURES}

Usable = Callable[[Source], bool]


def _data(run: Run, reads: Reads, source: Source) -> Any:
    return run if source is Source.RUN else reads.data.get(source, NOTHING)


def next_source(run: Run, reads: Reads, usable: Usable) -> Source | None:
    """The first source that some figure still needs and that has not been read yet, if any."""
    for figure in FIGURES:
        for take in figure.takes:
            if not usable(take.source) or (take.only_if is not None and not take.only_if(reads)):
                continue
            if take.source is not Source.RUN and take.source not in reads.data:
                return take.source
            data = _data(run, reads, take.source)
            if data is not NOTHING and take.value(run, data) is not None:
                break
    return None


def resolve(run: Run, reads: Reads, usable: Usable, *, may_settle: bool) -> dict[str, Any] | None:
    """Each figure's value from the first source that gives one (figures no source gives are left
    out); None to settle: a late source was empty, and the run may still be looked at again."""
    values: dict[str, Any] = {}
    for figure in FIGURES:
        late_empty = False
        for take in figure.takes:
            if not usable(take.source):
                continue
            data = _data(run, reads, take.source)
            value = None if data is NOTHING else take.value(run, data)
            if value is not None:
                if late_empty and not take.late and may_settle:
                    return None
                values[figure.name] = value
                break
            late_empty = late_empty or take.late
    return values


def listed_agent(run: Run) -> str | None:
    """The agent as the run itself names it (for runs in flight, which have no other source yet)."""
    return next((v for take in BY_NAME["agent_id"].takes if take.source is Source.RUN
                 if (v := take.value(run, run)) is not None), None)  # fmt: skip


def awaits_listing(run: Run) -> bool:
    """Whether a late figure of the run itself is still empty: a re-listing may bring it."""
    return any(
        take.late and take.source is Source.RUN and take.value(run, run) is None
        for figure in FIGURES
        for take in figure.takes
    )


def unsettled(run: Run, reads: Reads) -> set[Source]:
    """The sources read whose late figures were still empty: to read again on a settle look (the run
    itself is read again by discovery, which takes in each re-listing of a pending run)."""
    stale = set()
    for figure in FIGURES:
        for take in figure.takes:
            data = reads.data.get(take.source, NOTHING)
            late = take.late and take.source is not Source.RUN and data is not NOTHING
            if late and take.value(run, data) is None:
                stale.add(take.source)
    return stale


def without(source: Source) -> str:
    """What losing ``source`` costs, figure by figure, for the log: "duration_ns from the run's
    total_duration_ns, then the run's completed_at - created_at; ...; tools: none"."""
    parts = []
    for figure in FIGURES:
        if all(take.source != source for take in figure.takes):
            continue
        rest = [take.what for take in figure.takes if take.source != source]
        if not rest:
            parts.append(f"{figure.name}: none")
        else:
            parts.append(f"{figure.name} {'only ' if len(rest) == 1 else ''}from {', then '.join(rest)}")
    return "; ".join(parts)
