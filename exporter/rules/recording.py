"""The project's recording rules (monitoring-mixin naming, level:metric:operation). ``letta:`` series
are per job (summed over instances and agents), ``letta_agent:`` per job and agent_id,
``letta_instance:`` per exporter instance. All use a 5-minute window."""

from __future__ import annotations

from dataclasses import replace

from exporter.rules.declare import Rule


def _record(name: str, expr: str, comment: str = "") -> Rule:
    return Rule(kind="record", name=name, expr=expr, comment=comment)


def _ratio_or_zero(part: str, total: str) -> str:
    """``part / total`` that reads 0 (not "no data") while ``part`` has no series yet."""
    return f"(\n  {part}\n  or\n  {total} * 0\n)\n/\n{total}"


def _quantiles(metric: str) -> list[Rule]:
    job = f"letta:{metric}_bucket:rate5m"
    agent = f"letta_agent:{metric}_bucket:rate5m"
    return [
        _record(job, f"sum by (job, le) (rate(letta_{metric}_bucket[5m]))"),
        *[
            _record(f"letta:{metric}:p{round(q * 100)}_rate5m", f"histogram_quantile({q}, {job})")
            for q in (0.5, 0.9, 0.95, 0.99)
        ],
        _record(agent, f"sum by (job, agent_id, le) (rate(letta_{metric}_bucket[5m]))"),
        _record(f"letta_agent:{metric}:p95_rate5m", f"histogram_quantile(0.95, {agent})"),
    ]


def _with_comment(rules: list[Rule], comment: str) -> list[Rule]:
    return [replace(rules[0], comment=comment), *rules[1:]]


_REQUESTS = "letta_instance:exporter_api_requests:rate5m"

RECORDS: tuple[Rule, ...] = (
    _record(
        "letta:runs:rate5m",
        "sum by (job, status, stop_reason) (rate(letta_runs_total[5m]))",
        "Runs: rates by outcome, failure ratio.",
    ),
    _record("letta_agent:runs:rate5m", "sum by (job, agent_id, status) (rate(letta_runs_total[5m]))"),
    _record(
        "letta:runs_failed:ratio_rate5m",
        _ratio_or_zero(
            'sum by (job) (letta:runs:rate5m{status="failed"})', "sum by (job) (letta:runs:rate5m)"
        ),
        'The ratios read 0 (not "no data") where no failed series exists yet.',
    ),
    _record(
        "letta_agent:runs_failed:ratio_rate5m",
        _ratio_or_zero(
            'sum by (job, agent_id) (letta_agent:runs:rate5m{status="failed"})',
            "sum by (job, agent_id) (letta_agent:runs:rate5m)",
        ),
    ),
    *_with_comment(_quantiles("run_ttft_seconds"), "Time to first token."),
    *_with_comment(_quantiles("run_duration_seconds"), "Run duration."),
    _record(
        "letta:run_steps:p95_rate5m",
        "histogram_quantile(0.95, sum by (job, le) (rate(letta_run_steps_bucket[5m])))",
        "Steps per run.",
    ),
    _record(
        "letta:run_steps:mean_rate5m",
        "sum by (job) (rate(letta_run_steps_sum[5m]))\n/\nsum by (job) (rate(letta_run_steps_count[5m]))",
    ),
    _record("letta:run_tokens:rate5m", "sum by (job, type) (rate(letta_run_tokens_total[5m]))", "Tokens."),
    _record(
        "letta_agent:run_tokens:rate5m", "sum by (job, agent_id, type) (rate(letta_run_tokens_total[5m]))"
    ),
    _record("letta:step_tokens:rate5m", "sum by (job, model, type) (rate(letta_step_tokens_total[5m]))"),
    _record(
        _REQUESTS,
        "sum by (job, instance, endpoint, code) (rate(letta_exporter_api_requests_total[5m]))",
        'The exporter\'s own calls to the Letta API, per instance. The ratios read 0 (not "no data") '
        "before the first error or 429, so they can be graphed and compared from the start.",
    ),
    _record(
        "letta_instance:exporter_api_errors:ratio_rate5m",
        _ratio_or_zero(
            f'sum by (job, instance) ({_REQUESTS}{{code!~"2..|404|429"}})',
            f"sum by (job, instance) ({_REQUESTS})",
        ),
    ),
    _record(
        "letta_instance:exporter_api_rate_limited:ratio_rate5m",
        _ratio_or_zero(
            f'sum by (job, instance) ({_REQUESTS}{{code="429"}})', f"sum by (job, instance) ({_REQUESTS})"
        ),
    ),
)
