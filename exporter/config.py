"""Settings (docs/configuration.md): environment, a ``.env`` file, or command-line flags; flags win.

Letta's own names (``LETTA_BASE_URL``, ``LETTA_API_KEY``) are read as they are; everything else is
``LETTA_EXPORTER_*``. A bad value is reported as one line naming the setting; the key is a
``SecretStr`` so neither ``repr`` nor a validation error can print it. Every default is a name in
exporter/defaults.py; the other start-up checks are the command line's (cli.check_start_up).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import BeforeValidator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from exporter import defaults
from exporter.cost.price_file import PriceFile, PriceFileError, load_price_file

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_seconds(value: Any) -> float:
    """Seconds from ``90``, ``1.5``, ``90s``, ``15m``, ``1h`` or ``2d``. A negative number is left to
    ``Seconds``' ge=0 (a text with a sign does not match the pattern)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("expected a duration such as 30, 90s, 15m, 1h or 2d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_buckets(value: Any) -> tuple[float, ...]:
    parts = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    try:
        buckets = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        raise ValueError("expected comma-separated numbers of seconds") from None
    if not buckets:
        raise ValueError("needs at least one bucket")
    if any(b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError("buckets must be positive and strictly increasing")
    return buckets


Seconds = Annotated[float, Field(ge=0), BeforeValidator(parse_seconds)]
Buckets = Annotated[tuple[float, ...], NoDecode, BeforeValidator(parse_buckets)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LETTA_EXPORTER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    base_url: str = Field(
        defaults.LETTA_CLOUD_URL,
        validation_alias=AliasChoices("LETTA_BASE_URL"),
        description="Letta server to poll: Letta Cloud, or a self-hosted server such as http://localhost:8283.",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("LETTA_API_KEY"),
        description="Letta API key, sent as a bearer token. Never logged.",
    )
    api_key_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("LETTA_API_KEY_FILE"),
        description="File holding the API key (a mounted secret); used when LETTA_API_KEY is unset.",
    )
    listen_address: str = Field(defaults.LISTEN_ADDRESS, description="Address the HTTP server binds to.")
    port: int = Field(defaults.PORT, ge=1, le=65535, description="Port for /metrics, /healthz and /readyz.")
    poll_interval: float = Field(
        defaults.POLL_INTERVAL, gt=0, le=3600, description="Seconds between polls (fractions allowed)."
    )
    page_size: int = Field(
        defaults.PAGE_SIZE,
        ge=1,
        le=1000,
        description="Runs per list page (Letta allows 1..1000): fewer calls when busy.",
    )
    concurrency: int = Field(
        defaults.CONCURRENCY, ge=1, le=64, description="Letta requests in flight at once."
    )
    request_timeout: float = Field(
        defaults.REQUEST_TIMEOUT, gt=0, le=300, description="Seconds before one Letta request times out."
    )
    max_retries: int = Field(
        defaults.MAX_RETRIES, ge=0, le=10, description="Retries per request on 429, 5xx and transport errors."
    )
    max_requests_per_second: float | None = Field(
        None,
        ge=0,
        description="Ceiling of the adaptive Letta request rate, per second (0 = no cap). Unset: "
        f"{defaults.CLOUD_RATE_CEILING:g} for Letta Cloud, {defaults.SELF_HOSTED_RATE_CEILING:g} for a "
        "self-hosted server.",
    )
    discovery_overlap: Seconds = Field(
        defaults.DISCOVERY_OVERLAP,
        description="Seconds re-read behind the newest run each poll, to catch runs that appear late.",
    )
    enrich_usage: bool = Field(
        defaults.ENRICH_USAGE, description="Read token usage (from steps when those are read, else /usage)."
    )
    enrich_metrics: bool = Field(
        defaults.ENRICH_METRICS, description="Read /metrics per run (duration, step count, tools)."
    )
    enrich_steps: bool = Field(
        defaults.ENRICH_STEPS, description="Read /steps per run (per-model tokens and step outcomes)."
    )
    steps_source: Literal["auto", "stream", "per_run"] = Field(
        defaults.STEPS_SOURCE,
        description="Where run steps come from: auto (Letta's steps list, a few pages a poll, where the "
        "server serves it and it checks out against per-run reads; else per run), stream (the list, "
        "unchecked) or per_run (/v1/runs/{id}/steps, one call a run).",
    )
    enrich_trace: bool = Field(
        defaults.ENRICH_TRACE,
        description="Read /trace per run for trace export, or for TTFT when a traced run lacks it.",
    )
    traces: bool | None = Field(
        None,
        description="Export run traces over OTLP; unset: on when an OTEL_EXPORTER_OTLP_*ENDPOINT is set.",
    )
    trace_synthesis: bool = Field(
        defaults.TRACE_SYNTHESIS,
        description="Synthesise a trace from the run and its steps when Letta has none.",
    )
    trace_reparent_orphans: bool = Field(
        defaults.TRACE_REPARENT_ORPHANS,
        description="Attach spans whose parent /trace left out to the run's root span.",
    )
    trace_attribute_denylist: str = Field(
        defaults.TRACE_ATTRIBUTE_DENYLIST,
        description="Span attribute keys never exported: comma-separated globs; !glob keeps a key.",
    )
    trace_probe_interval: Seconds = Field(
        defaults.TRACE_PROBE_INTERVAL,
        description="After /trace answered 501 (no trace storage), how often to ask again.",
    )
    agent_label: bool = Field(defaults.AGENT_LABEL, description="Label run metrics with agent_id.")
    max_agents: int = Field(
        defaults.MAX_AGENTS, ge=1, description="Distinct agent_id values before the rest share 'other'."
    )
    agent_names: bool = Field(defaults.AGENT_NAMES, description="Look up agent names for letta_agent_info.")
    backfill: Seconds = Field(
        defaults.BACKFILL, description="Count runs created this long before start-up (e.g. 1h); 0 = none."
    )
    state_file: Path | None = Field(None, description="File that keeps counts and progress across restarts.")
    max_pending: int = Field(
        defaults.MAX_PENDING,
        ge=1,
        description="Finished runs held for enrichment at most; beyond it they wait in Letta (backpressure).",
    )
    ttft_buckets: Buckets = Field(defaults.TTFT_BUCKETS, description="TTFT histogram buckets, seconds.")
    duration_buckets: Buckets = Field(
        defaults.DURATION_BUCKETS, description="Run duration histogram buckets, seconds."
    )
    price_file: Path | None = Field(
        None,
        description="YAML or JSON file of your own model prices (US dollars per million tokens), which win "
        "over the bundled price table: negotiated or BYOK prices, custom and self-hosted models.",
    )
    web_config_file: Path | None = Field(
        None, description="Prometheus-style web config (TLS, basic auth) for /metrics."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        defaults.LOG_LEVEL, description="Log level."
    )
    log_format: Literal["text", "json"] = Field(
        defaults.LOG_FORMAT, description="Log format: text, or json for machines."
    )
    _prices: PriceFile | None = PrivateAttr(None)  # price_file, read and checked at start-up

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _key_from_file(self) -> Settings:
        if self.api_key_file is not None:
            # Checked even when LETTA_API_KEY wins: a mount that is not there is a deployment bug.
            try:
                key = self.api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"api_key_file: cannot read ({exc.strerror})") from None
            if not key:
                raise ValueError("api_key_file: file is empty")
            if self.api_key is None:
                self.api_key = SecretStr(key)
        return self

    @model_validator(mode="after")
    def _price_file(self) -> Settings:
        if self.price_file is not None:
            try:
                self._prices = load_price_file(self.price_file)
            except PriceFileError as exc:
                raise ValueError(f"price_file: {exc}") from None
        return self

    @property
    def prices(self) -> PriceFile | None:
        """The operator's prices from ``price_file``, if set."""
        return self._prices

    def request_rate_ceiling(self) -> float:
        if self.max_requests_per_second is not None:
            return self.max_requests_per_second
        cloud = self.base_url.removeprefix("https://").split("/")[0].endswith("letta.com")
        return defaults.CLOUD_RATE_CEILING if cloud else defaults.SELF_HOSTED_RATE_CEILING

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None


def env_name(field_name: str, settings_cls: type[Settings] = Settings) -> str:
    alias = settings_cls.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):  # Letta's own name: LETTA_BASE_URL, LETTA_API_KEY, ...
        return str(alias.choices[0])
    return f"LETTA_EXPORTER_{field_name.upper()}"


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


class ConfigError(Exception):
    """A setting that cannot work (a bad value, a port in use): one line naming it and what is wrong."""


def describe_error(exc: ValidationError, settings_cls: type[Settings] = Settings) -> str:
    first = exc.errors()[0]
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("loc"):
        name = str(first["loc"][0])
    elif ":" in message:
        # Model-level checks name their field in the message ("api_key_file: ...").
        name, _, message = message.partition(":")
    else:
        name = "configuration"
    message = message.strip()
    if name in settings_cls.model_fields:
        return invalid_setting(name, message, settings_cls)
    return f"invalid setting {name}: {message}"


def invalid_setting(name: str, message: str, settings_cls: type[Settings] = Settings) -> str:
    return f"invalid setting {env_name(name, settings_cls)} ({flag_name(name)}): {message}"


def load_settings(
    overrides: dict[str, Any] | None = None, settings_cls: type[Settings] = Settings
) -> Settings:
    try:
        return settings_cls(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, settings_cls)) from None
