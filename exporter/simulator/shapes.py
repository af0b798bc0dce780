"""JSON bodies with exactly the keys, types and quirks of a real Letta 0.16.8 server's answers, which
the spec and Letta Cloud generations serve too (Letta 0.11's are in shapes_011.py).

Reference: the captures in tests/fixtures/letta-real/. Every key the capture has is present here,
null where the capture has null, and the serialisation quirks are kept on purpose (naive
``completed_at``, ``total_duration_ns`` only on the list, 422 details as Python reprs).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.simulator.runs import (
    REDIS_REFUSAL,
    Agent,
    RunDetails,
    SimRun,
    StepData,
    failure,
)

VERSION = "0.16.8"
ORG_ID = "org-00000000-0000-4000-8000-000000000000"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TRACE_501_DETAIL = (
    "OTEL traces require ClickHouse. Set LETTA_CLICKHOUSE_ENDPOINT and configure ClickHouse connection."
)
_ACTOR = (
    "id='user-00000000-0000-4000-8000-000000000000' "
    "organization_id='org-00000000-0000-4000-8000-000000000000' "
    "name='default_user' created_at=None updated_at=datetime.datetime(2026, 11, 22, 17, 49, 38, 825308, "
    "tzinfo=datetime.timezone.utc) is_deleted=False"
)
REQUEST_CONFIG = {
    "use_assistant_message": True,
    "assistant_message_tool_name": "send_message",
    "assistant_message_tool_kwarg": "message",
    "include_return_message_types": None,
}
CALLBACK_SEND_DELAY_US = 40_000
STR_HINT = "typing.Optional[str]"  # how Python 3.11 prints the step manager's type hint
# The RunStatus and StopReasonType enums of Letta's OpenAPI spec (Runs subset, openapi-runs.json),
# in its order, which is also the order Letta 0.16.8's 400 and 422 list them in. Taken from the
# spec, not from exporter.letta: the simulator tests the client, so it must not share its models.
RUN_STATUSES = ("created", "running", "completed", "failed", "cancelled")
STOP_REASONS = (
    "end_turn",
    "error",
    "llm_api_error",
    "invalid_llm_response",
    "invalid_tool_call",
    "max_steps",
    "max_tokens_exceeded",
    "no_tool_call",
    "tool_rule",
    "cancelled",
    "insufficient_credits",
    "requires_approval",
    "context_window_overflow_in_system_prompt",
)


def to_datetime(us: int) -> datetime:
    # Integer arithmetic: a float round trip would move the microseconds.
    return EPOCH + timedelta(microseconds=us)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (Postgres keeps microseconds)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def _fmt(us: int, suffix: str) -> str:
    moment = to_datetime(us)
    # pydantic's serialiser, which Letta uses: no fraction at all when it is zero.
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}{suffix}"


def fmt_aware(us: int) -> str:
    return _fmt(us, "Z")


def fmt_naive(us: int) -> str:
    """``completed_at`` and the other timestamps Letta sets itself come without a zone."""
    return _fmt(us, "")


def not_found(kind: str, ident: str) -> dict[str, str]:
    # Letta's ORM message, actor repr and all (unknown_run*.json).
    detail = f"{kind} not found with id='['{ident}']', access level in ['read'] for actor='{_ACTOR}'"
    return {"detail": detail}


def no_row(table: str, ident: str) -> dict[str, str]:
    """A list cursor naming a row that does not exist: Letta's ORM raises NoResultFound (a 404)."""
    return {"detail": f"No {table} found with id {ident}"}


def steps_list_bug(descending: bool) -> dict[str, str]:
    """Letta 0.16.8's GET /v1/steps/: its router passes ``order=(order == "asc")``, a bool, to the step
    manager's ``str`` parameter, and ``enforce_types`` turns that into a 400 on every request."""
    passed = not descending
    return {"detail": f"Argument order does not match type {STR_HINT}; is {passed} of type {type(passed)}"}


def validation_error(errors: list[dict[str, Any]]) -> dict[str, str]:
    # Letta's handler sends str(exc.errors()) rather than FastAPI's list: a repr string.
    return {"trace_id": "", "detail": repr(errors)}


def stop_reason_expected() -> str:
    quoted = [f"'{reason}'" for reason in STOP_REASONS]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _run_metadata(run: SimRun, terminal: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {"run_type": "send_message_streaming" if run.streaming else "send_message"}
    if not terminal or run.status != "failed":
        return metadata
    if run.refused:
        metadata["error"] = REDIS_REFUSAL
    elif run.stop_reason == "llm_api_error" and run.streaming:
        _, message = failure(run)
        metadata["error"] = {
            "message_type": "error_message",
            "run_id": run.id,
            "error_type": "llm_error",
            "message": "An error occurred with the LLM request.",
            "detail": message,
            "seq_id": None,
        }
    else:
        metadata["error"] = failure(run)[1]
    return metadata


def run_body(run: SimRun, now_us: int, *, listed: bool, hide_ttft: bool = False) -> dict[str, Any]:
    """A Run. ``listed``: list_runs joins run_metrics and fills ``total_duration_ns``; retrieve does not.
    ``hide_ttft``: ``ttft_ns`` stays null, as on Letta 0.16.8's current agent loop."""
    terminal = run.terminal_at(now_us)
    settled = run.settled_at(now_us)
    end_us = run.end_us if terminal else None
    # A callback fires after the run ends; like run_metrics, its result lands with the write lag.
    callback_done = settled and run.callback_url is not None
    return {
        "id": run.id,
        "status": run.status_at(now_us),
        "created_at": fmt_aware(run.created_us),
        "completed_at": fmt_naive(end_us) if end_us is not None else None,
        "agent_id": run.agent.id,
        "conversation_id": run.conversation_id,
        "base_template_id": None,
        "background": run.background,
        "metadata": _run_metadata(run, terminal),
        "request_config": dict(REQUEST_CONFIG),
        "stop_reason": run.stop_reason if terminal else None,
        "callback_url": run.callback_url,
        "callback_sent_at": (
            fmt_naive(end_us + CALLBACK_SEND_DELAY_US) if callback_done and end_us is not None else None
        ),
        "callback_status_code": run.callback_status_code if callback_done else None,
        "callback_error": run.callback_error if callback_done else None,
        # Only finished runs show TTFT here; the simulator does not model a run mid-stream.
        "ttft_ns": run.ttft_ns if terminal and not hide_ttft else None,
        "total_duration_ns": run.run_ns if listed and settled else None,
    }


def metrics_body(run: SimRun, details: RunDetails, now_us: int) -> dict[str, Any]:
    settled = run.settled_at(now_us)
    return {
        "id": run.id,
        "organization_id": ORG_ID,
        "agent_id": run.agent.id,
        "project_id": None,
        "run_start_ns": run.created_us * 1000 + run.run_start_offset_ns,
        "run_ns": run.run_ns if settled else None,
        "num_steps": len(details.steps) if settled else 0,
        "tools_used": list(details.tools_used) if settled and details.tools_used else None,
        "template_id": None,
        "base_template_id": None,
    }


def usage_body(rows: Sequence[StepData]) -> dict[str, Any]:
    """``/usage``: the sum of the run's step rows as they stand (pending ones count zero)."""
    prompt = sum(row.prompt_tokens for row in rows)
    completion = sum(row.completion_tokens for row in rows)
    return {
        "completion_tokens": completion,
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }


def _traceback(step: StepData) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "/opt/letta/venv/lib/python3.11/site-packages/letta/agents/letta_agent_v3.py", '
        "line 1540, in _step\n    raise e\n"
        f"letta.errors.{step.error_type}: {step.error_message}\n"
    )


def step_body(run: SimRun, step: StepData, run_id: str | None) -> dict[str, Any]:
    model = step.model
    prompt_details = None
    if step.has_prompt_details:
        prompt_details = {
            "cached_tokens": step.cached_tokens,
            "cache_read_tokens": step.cache_read_tokens,
            "cache_creation_tokens": step.cache_creation_tokens,
        }
    completion_details = None
    if step.reasoning_tokens is not None:
        completion_details = {"reasoning_tokens": step.reasoning_tokens}
    error_data = None
    if step.error_type is not None:
        error_data = {"message": step.error_message, "traceback": _traceback(step), "details": None}
    return {
        "id": step.id,
        "origin": None,
        "organization_id": ORG_ID,
        "provider_id": None,
        "run_id": run_id,
        "agent_id": run.agent.id,
        "provider_name": model.provider,
        "provider_category": "base",
        "model": model.name,
        "model_handle": model.handle,
        "model_endpoint": model.endpoint,
        "context_window_limit": model.context_window,
        "completion_tokens": step.completion_tokens,
        "prompt_tokens": step.prompt_tokens,
        "total_tokens": step.prompt_tokens + step.completion_tokens,
        # The flat copies: set where the capture sets them, else null.
        "cached_input_tokens": step.cached_tokens or None,
        "cache_write_tokens": step.cache_creation_tokens or None,
        "reasoning_tokens": None,
        "completion_tokens_details": completion_details,
        "prompt_tokens_details": prompt_details,
        "stop_reason": step.stop_reason,
        "tags": [],
        "tid": None,
        "trace_id": step.trace_id,
        "request_id": None,
        "messages": [],
        "feedback": None,
        "project_id": None,
        "error_type": step.error_type,
        "error_data": error_data,
        "status": step.status,
    }


def agent_body(agent: Agent) -> dict[str, Any]:
    created = fmt_aware(agent.created_us)
    model = agent.model
    return {
        "id": agent.id,
        "name": agent.name,
        "agent_type": "letta_v1_agent",
        "description": None,
        "created_at": created,
        "updated_at": created,
        "created_by_id": "user-00000000-0000-4000-8000-000000000000",
        "last_updated_by_id": "user-00000000-0000-4000-8000-000000000000",
        "metadata": None,
        "tags": [],
        "project_id": None,
        "template_id": None,
        "base_template_id": None,
        "timezone": "UTC",
        "model": model.handle,
        "llm_config": {
            "model": model.name,
            "model_endpoint_type": model.provider,
            "model_endpoint": model.endpoint,
            "provider_name": model.provider,
            "context_window": model.context_window,
            "handle": model.handle,
        },
    }


HEALTH = {"version": VERSION, "status": "ok"}


def tool_body(tool_id: str, name: str) -> dict[str, Any]:
    """``GET /v1/tools/{id}``: the fields of Letta's ``Tool`` schema (letta/schemas/tool.py), for a
    built-in tool (no source code)."""
    return {
        "id": tool_id,
        "tool_type": "letta_builtin",
        "description": f"The {name} tool.",
        "source_type": "python",
        "name": name,
        "tags": ["letta_builtin"],
        "source_code": None,
        "json_schema": {"name": name, "description": f"The {name} tool.",
                        "parameters": {"type": "object", "properties": {}, "required": []}},
        "args_json_schema": None,
        "return_char_limit": 50000,
        "pip_requirements": None,
        "npm_requirements": None,
        "default_requires_approval": None,
        "enable_parallel_execution": False,
        "created_by_id": "user-00000000-0000-4000-8000-000000000000",
        "last_updated_by_id": "user-00000000-0000-4000-8000-000000000000",
        "metadata_": {},
        "project_id": None,
    }  # fmt: skip
