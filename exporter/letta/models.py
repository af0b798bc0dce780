"""Typed views of the Letta Runs API responses.

Models are deliberately lenient: Letta adds fields and enum values over time, and real servers
return shapes the spec does not promise (naive timestamps, unlisted fields, nulls everywhere).
Unknown fields are accepted and dropped, pydantic's default (a finished run waits in memory for its
enrichment, so it keeps only what the exporter reads), enums are plain strings, and every figure the
exporter does not strictly need is optional.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field, field_validator, model_validator

# Letta 0.11 adds ``expired`` (terminal) and ``pending`` (queued, not terminal) to the spec's five.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})
ACTIVE_STATUSES = ("created", "running")  # pre-created in letta_active_runs; others appear as seen
FINAL_STEP_STATUSES = frozenset({"success", "failed", "cancelled"})

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def is_safe_id(value: str | None) -> bool:
    """IDs go into URL paths and label values: only the characters Letta's own IDs use."""
    return value is not None and _SAFE_ID.match(value) is not None


def as_utc(value: datetime | None) -> datetime | None:
    """Letta writes ``completed_at`` without a zone while ``created_at`` has one; both are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _non_negative_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _stop_reason(value: Any) -> str | None:
    # Letta has sent both the bare enum and a LettaStopReason-like object over its history.
    if isinstance(value, dict):
        value = value.get("stop_reason")
    return str(value) if value is not None else None


# Figures arrive as null, numbers or text: anything but a whole number >= 0 reads as None.
Count = Annotated[int | None, BeforeValidator(_non_negative_int)]
StopReason = Annotated[str | None, BeforeValidator(_stop_reason)]


class Run(BaseModel):
    id: str
    status: str = "created"
    created_at: datetime | None = None
    completed_at: datetime | None = None
    agent_id: str | None = None
    # Letta 0.11 keeps the agent in ``metadata`` (and loses it there on failed and background runs);
    # only that one key is kept of a metadata object that can hold a whole reply.
    metadata_agent_id: str | None = None
    conversation_id: str | None = None
    stop_reason: StopReason = None
    callback_url: str | None = None
    callback_status_code: Count = None
    callback_error: str | None = None
    ttft_ns: Count = None
    total_duration_ns: Count = None

    _utc = field_validator("created_at", "completed_at")(as_utc)

    @model_validator(mode="before")
    @classmethod
    def _metadata_agent(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(metadata := data.get("metadata"), dict):
            agent = metadata.get("agent_id")
            if isinstance(agent, str):
                data = {**data, "metadata_agent_id": agent}
        return data

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not is_safe_id(value):
            raise ValueError("not a run ID")
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> str:
        return str(value).lower() if value is not None else "created"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class PromptTokenDetails(BaseModel):
    cached_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None


class CompletionTokenDetails(BaseModel):
    reasoning_tokens: int | None = None


class UsageStatistics(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokenDetails | None = None
    completion_tokens_details: CompletionTokenDetails | None = None


class RunMetrics(BaseModel):
    run_ns: Count = None
    num_steps: Count = None
    tools_used: list[str] | None = None

    @field_validator("tools_used", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> list[str] | None:
        if not isinstance(value, list):
            return None
        return [str(item) for item in value if item is not None]


# Where a step names its run: Letta 0.11 says job_id.
STEP_RUN_ID_KEYS = ("run_id", "job_id")


def raw_step_run_id(raw: dict[str, Any]) -> str | None:
    """The run a step row names, read from the raw row without validating it."""
    return next((value for key in STEP_RUN_ID_KEYS if isinstance(value := raw.get(key), str)), None)


class Step(BaseModel):
    id: str | None = None
    run_id: str | None = Field(None, validation_alias=AliasChoices(*STEP_RUN_ID_KEYS))
    agent_id: str | None = None
    provider_name: str | None = None
    model: str | None = None
    model_handle: str | None = None
    prompt_tokens: Count = None
    completion_tokens: Count = None
    cached_input_tokens: Count = None
    cache_write_tokens: Count = None
    reasoning_tokens: Count = None
    prompt_tokens_details: PromptTokenDetails | None = None
    completion_tokens_details: CompletionTokenDetails | None = None
    stop_reason: StopReason = None
    status: str | None = None
    trace_id: str | None = None
    error_type: str | None = None

    @property
    def model_label(self) -> str:
        return self.model or self.model_handle or "unknown"

    @property
    def is_final(self) -> bool:
        """Letta writes a step ``pending``, with zero usage, before its model call and fills it in at
        the end; a server without that status writes steps once, at the end."""
        return self.status is None or self.status in FINAL_STEP_STATUSES


class Named(BaseModel):
    """An agent or a tool, as far as the exporter reads either: its ID and name."""

    id: str
    name: str | None = None
