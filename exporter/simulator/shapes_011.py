"""JSON bodies of Letta 0.11 (the jobs era), key for key as a real 0.11.7 server answered them.

Reference: the captures in tests/fixtures/letta-real-0.11.7/. A run is a job: no ``agent_id`` and no
``stop_reason`` of its own, the agent only in ``metadata`` (which a failure or a background run's
result replaces), ``completed_at`` without a zone, ``ttft_ns`` always null. Steps carry ``job_id`` and
none of the cache or reasoning token fields.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from exporter.simulator import shapes
from exporter.simulator.runs import RunDetails, SimRun, StepData, upstream_500
from exporter.simulator.shapes import CALLBACK_SEND_DELAY_US, fmt_aware, fmt_naive, to_datetime

VERSION = "0.11.7"
HEALTH = {"version": VERSION, "status": "ok"}
USER_ID = "user-00000000-0000-4000-8000-000000000000"
UPDATED_LAG_US = 46  # updated_at trails completed_at by tens of µs (the captures: 46 to 67)
MESSAGE_SALT = 0x3E55_A6E0
RUN_NOT_FOUND = {"detail": "Run not found"}
STEP_KEYS = (
    "id", "origin", "organization_id", "provider_id", "job_id", "agent_id", "provider_name",
    "provider_category", "model", "model_endpoint", "context_window_limit", "completion_tokens",
    "prompt_tokens", "total_tokens", "completion_tokens_details", "stop_reason", "tags", "tid", "trace_id",
    "messages", "feedback", "project_id", "error_type", "error_data", "status",
)  # fmt: skip


def usage_not_found(run_id: str) -> dict[str, str]:
    return {"detail": f"Run '{run_id}' not found"}


def recorded_duration_ns(run: SimRun) -> int | None:
    """``total_duration_ns`` as the server records it: by the synchronous request's handler (failed
    runs too), never for a background run, nor for a run that expired rather than ended."""
    if run.background or run.status == "expired":
        return None
    return run.run_ns


def _updated_us(run: SimRun, now_us: int) -> int:
    if run.terminal_at(now_us):
        assert run.end_us is not None
        return run.end_us + UPDATED_LAG_US
    # A run that stays "created" until it ends has not been updated since it was made.
    return run.created_us if run.status_at(now_us) == "created" else run.start_us


def _reply(run: SimRun, details: RunDetails) -> dict[str, Any]:
    """A background run's ``metadata.result``: the reply it would have streamed (run_async.json).

    Its usage is the run's real total, which the last row already holds (see runs._as_jobs_era)."""
    last = details.steps[-1]
    assert run.end_us is not None
    ident = str(uuid.UUID(int=random.Random(run.seed ^ MESSAGE_SALT).getrandbits(128), version=4))
    return {
        "messages": [
            {
                "id": f"message-{ident}",
                "date": f"{to_datetime(run.end_us):%Y-%m-%dT%H:%M:%S}+00:00",
                "name": None,
                "message_type": "assistant_message",
                "otid": ident[:-2] + "00",
                "sender_id": None,
                "step_id": last.id,
                "is_err": None,
                "seq_id": None,
                "run_id": None,
                "content": "ok",
            }
        ],
        "stop_reason": {"message_type": "stop_reason", "stop_reason": run.stop_reason},
        "usage": {
            "message_type": "usage_statistics",
            "completion_tokens": last.completion_tokens,
            "prompt_tokens": last.prompt_tokens,
            "total_tokens": last.prompt_tokens + last.completion_tokens,
            "step_count": len(details.steps),
            "steps_messages": None,
            "run_ids": [run.id],
        },
    }


def _metadata(run: SimRun, terminal: bool, details: RunDetails | None) -> dict[str, Any]:
    # The request handler writes the metadata at creation and replaces it on failure, or, for a
    # background run, with the reply; a synchronous run that ends well keeps it.
    if terminal and run.status == "failed":
        return {"error": upstream_500(run.agent.model)}
    if terminal and run.background:
        assert details is not None
        return {"result": _reply(run, details)}
    if run.background:
        return {"job_type": "send_message_async", "agent_id": run.agent.id}
    if run.streaming:
        return {"job_type": "send_message_streaming", "agent_id": run.agent.id, "background": False}
    return {"job_type": "send_message", "agent_id": run.agent.id}


def needs_details(run: SimRun, now_us: int) -> bool:
    """Whether run_body needs the run's steps (only a finished background run's reply shows them)."""
    return run.background and run.terminal_at(now_us) and run.status != "failed"


def run_body(run: SimRun, now_us: int, details: RunDetails | None) -> dict[str, Any]:
    terminal = run.terminal_at(now_us)
    # Like 0.16.8's run_metrics, the duration lands a moment after the run is terminal (write lag).
    settled = run.settled_at(now_us)
    end_us = run.end_us if terminal else None
    callback_done = settled and run.callback_url is not None
    return {
        "created_by_id": USER_ID,
        "last_updated_by_id": USER_ID,
        "created_at": fmt_aware(run.created_us),
        "updated_at": fmt_aware(_updated_us(run, now_us)),
        "status": run.status_at(now_us),
        "completed_at": fmt_naive(end_us) if end_us is not None else None,
        "metadata": _metadata(run, terminal, details),
        "job_type": "run",
        "callback_url": run.callback_url,
        "callback_sent_at": (
            fmt_naive(end_us + CALLBACK_SEND_DELAY_US) if callback_done and end_us is not None else None
        ),
        "callback_status_code": run.callback_status_code if callback_done else None,
        "callback_error": run.callback_error if callback_done else None,
        "ttft_ns": None,
        "total_duration_ns": recorded_duration_ns(run) if settled else None,
        "id": run.id,
        "user_id": USER_ID,
        "request_config": None,
    }


def _traceback(run: SimRun) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File ".../site-packages/letta/agents/letta_agent.py", line 657, in _step\n'
        "    ) = await self._build_and_request_from_llm(\n"
        f"letta.errors.LLMServerError: {upstream_500(run.agent.model)}\n"
    )


def step_body(run: SimRun, step: StepData) -> dict[str, Any]:
    """0.16.8's step row less what 0.11's Step lacks, ``job_id`` for ``run_id``, in 0.11's order (the
    rows derived for this generation already have no token details)."""
    body = shapes.step_body(run, step, run.id)
    body["job_id"] = run.id
    if body["error_data"] is not None:
        body["error_data"]["traceback"] = _traceback(run)
    return {key: body[key] for key in STEP_KEYS}
