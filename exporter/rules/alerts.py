"""The project's alerts, declared once.

Each threshold lives here and nowhere else: rules/letta-exporter.rules.yml, the dashboards
(dashboards/generate.py reads them with ``threshold()``) and the alert tables of
docs/dashboards.md and the rules file's header are all generated from this list by
``python rules/generate.py`` (tests/test_alert_declarations.py fails while one of them is stale).

To add an alert, add one ``Alert(...)`` to ``ALERTS`` (the order is the rules file's and the tables'),
run ``python rules/generate.py``, and give it a promtool unit test in rules/tests/.
"""

from __future__ import annotations

from exporter.rules.declare import Alert, Threshold

ALERTS: tuple[Alert, ...] = (
    Alert(
        name="LettaExporterDown",
        severity="critical",
        for_seconds=300,
        comment="Two ways to be blind: Prometheus cannot scrape the exporter, or the exporter cannot "
        "reach Letta. The `reason` label says which.",
        expr='label_replace(up{job=~".*letta-exporter.*"} == 0, "reason", "scrape_failed", "", "")\n'
        "or\n"
        'label_replace(letta_exporter_up == 0, "reason", "letta_unreachable", "", "")',
        summary="Letta exporter {{ $labels.instance }} is down ({{ $labels.reason }}).",
        description='{{ if eq $labels.reason "scrape_failed" -}} Prometheus has not been able to scrape '
        "letta-exporter {{ $labels.instance }} (job {{ $labels.job }}) for ${for}. {{- else -}} "
        "letta-exporter {{ $labels.instance }} (job {{ $labels.job }}) has not been able to reach the "
        "Letta API for ${for} (letta_exporter_up == 0): check Letta, the network and the API key. "
        "{{- end }} Letta run metrics are not being updated.",
        fires_when='Prometheus cannot scrape the exporter (`up == 0`, label `reason="scrape_failed"`), or '
        'the exporter cannot reach the Letta API (`letta_exporter_up == 0`, `reason="letta_unreachable"`)',
    ),
    Alert(
        name="LettaExporterUnauthorized",
        severity="critical",
        for_seconds=300,
        comment="A refused API key needs a person, not a wait: say so, and name the setting.",
        expr='increase(letta_exporter_poll_failures_total{reason="unauthorized"}[5m]) > 0\n'
        "and on (job, instance)\n"
        "letta_exporter_up == 0",
        summary="Letta refuses the API key of exporter {{ $labels.instance }}.",
        description="Letta answers 401/403 to letta-exporter {{ $labels.instance }} (job {{ $labels.job }}): "
        "set LETTA_API_KEY (or LETTA_API_KEY_FILE) to a valid key that may read runs. The exporter's log "
        "names the Letta base URL. Letta run metrics are not being updated.",
        fires_when="Letta answers 401/403 to the exporter's polls "
        '(`letta_exporter_poll_failures_total{reason="unauthorized"}` rose within 5 min while '
        "`letta_exporter_up` is 0): the API key is missing, wrong or may not read runs",
    ),
    Alert(
        name="LettaExporterFallingBehind",
        severity="warning",
        for_seconds=600,
        comment="Runs finish faster than the exporter can read them: counts lag, and the backlog waits "
        "in Letta (the exporter's own queue is bounded), so nothing is lost, only late.",
        thresholds={"age": Threshold(300, "seconds")},
        expr="max by (job, instance) (letta_exporter_oldest_unrecorded_run_age_seconds) > ${age}",
        summary="Letta exporter {{ $labels.instance }} is {{ $value | humanizeDuration }} behind Letta.",
        description="A run that finished {{ $value | humanizeDuration }} ago is still not recorded by "
        "letta-exporter {{ $labels.instance }} (job {{ $labels.job }}), for ${for}. Runs finish faster "
        "than the exporter reads them: raise LETTA_EXPORTER_CONCURRENCY or the request rate ceiling "
        "(LETTA_EXPORTER_MAX_REQUESTS_PER_SECOND), or switch off a source you do not need "
        "(LETTA_EXPORTER_ENRICH_*). Nothing is lost: the backlog waits in Letta.",
        fires_when="`letta_exporter_oldest_unrecorded_run_age_seconds` above ${age}: Letta finishes runs "
        "faster than the exporter reads them; the backlog waits in Letta, nothing is lost",
    ),
    Alert(
        name="LettaExporterPollingStale",
        severity="warning",
        for_seconds=300,
        comment="A hung poll loop: the last poll reached Letta, but none has finished since. When the "
        "exporter cannot reach Letta at all, LettaExporterDown fires instead.",
        thresholds={"age": Threshold(300, "seconds")},
        expr="(time() - letta_exporter_last_successful_poll_timestamp_seconds > ${age})\n"
        "unless on (job, instance)\n"
        "(letta_exporter_up == 0)",
        summary="Letta exporter {{ $labels.instance }} has not completed a poll for "
        "{{ $value | humanizeDuration }}.",
        description="letta-exporter {{ $labels.instance }} (job {{ $labels.job }}) last completed a poll of "
        "Letta {{ $value | humanizeDuration }} ago (threshold ${age}), although it reports Letta as "
        "reachable: its poll loop may be stuck. New runs are not being counted.",
        fires_when="no poll has completed for more than ${age} while the exporter still reports Letta as "
        "reachable: a hung poll loop (when Letta is unreachable, LettaExporterDown fires instead)",
    ),
    Alert(
        name="LettaExporterNotRecording",
        severity="warning",
        for_seconds=300,
        comment="Never a silent zero: finished runs are seen but none gets recorded (a server the "
        "exporter misreads, reads that keep failing). The exporter's log says what they wait for.",
        expr="max by (job, instance) (letta_exporter_not_recording) == 1",
        summary="Letta exporter {{ $labels.instance }} sees runs finish but records none.",
        description="letta-exporter {{ $labels.instance }} (job {{ $labels.job }}) has had finished runs "
        "waiting for five polls in a row without recording one, for ${for}: its log line 'no run "
        "recorded for 5 polls' names what they wait for (the steps stream, failed reads, late figures). "
        "Run counts are not being updated.",
        fires_when="finished runs have waited five polls in a row and none was recorded "
        "(`letta_exporter_not_recording`): the log names what they wait for",
    ),
    Alert(
        name="LettaEndpointMissing",
        severity="info",
        for_seconds=900,
        comment="This Letta does not serve an endpoint the exporter reads (an older or newer server, "
        "/trace without ClickHouse): nothing is lost that another source gives, but some figures are "
        "(docs/servers.md). Information, not a page: a server upgrade can bring it back.",
        expr="letta_exporter_endpoint_available == 0",
        summary="Letta does not serve {{ $labels.endpoint }} to exporter {{ $labels.instance }}.",
        description="letta-exporter {{ $labels.instance }} (job {{ $labels.job }}) found that Letta does "
        "not serve {{ $labels.endpoint }}; the figures it gave come from their next source, and the "
        "exporter's log says which are lost (docs/servers.md). It asks again every "
        "LETTA_EXPORTER_TRACE_PROBE_INTERVAL.",
        fires_when="Letta lacks an endpoint the exporter reads (`letta_exporter_endpoint_available == 0`): "
        "its figures come from their next source, the log names what is lost",
    ),
    Alert(
        name="LettaApiErrorsHigh",
        severity="warning",
        for_seconds=900,
        thresholds={"ratio": Threshold(0.05, "ratio")},
        expr="letta_instance:exporter_api_errors:ratio_rate5m > ${ratio}",
        summary="{{ $value | humanizePercentage }} of Letta API requests from {{ $labels.instance }} fail.",
        description="{{ $value | humanizePercentage }} of letta-exporter {{ $labels.instance }}'s requests "
        "to the Letta API (job {{ $labels.job }}) got a 5xx, an unexpected 4xx, a timeout or a transport "
        "error over the last 5 minutes, for ${for} (threshold ${ratio}). Metrics may lag or miss "
        "enrichment (tokens, steps, tools); see the exporter-health dashboard's Letta API row for the "
        "endpoint and code.",
        fires_when="more than ${ratio} of the exporter's Letta API requests fail over 5 min: 5xx, a 4xx "
        "other than 404 and 429, a timeout or a transport error (404s are normal: traces may be "
        "unavailable, runs may be deleted)",
    ),
    Alert(
        name="LettaApiRateLimited",
        severity="warning",
        for_seconds=900,
        thresholds={"ratio": Threshold(0.01, "ratio")},
        expr="letta_instance:exporter_api_rate_limited:ratio_rate5m > ${ratio}",
        summary="Letta is rate limiting exporter {{ $labels.instance }} "
        "({{ $value | humanizePercentage }} of requests get 429).",
        description="{{ $value | humanizePercentage }} of letta-exporter {{ $labels.instance }}'s requests "
        "to the Letta API (job {{ $labels.job }}) were answered 429 Too Many Requests over the last 5 "
        "minutes, for ${for} (threshold ${ratio}), although the exporter halves its request rate on each "
        "429: the floor (1 request/s) is still too much for this Letta plan, or another client shares "
        "the key. Lower LETTA_EXPORTER_MAX_REQUESTS_PER_SECOND or the enrichment.",
        fires_when="more than ${ratio} of the exporter's Letta API requests are answered 429 over 5 min",
    ),
    Alert(
        name="LettaRunFailureRatioHigh",
        severity="critical",
        for_seconds=900,
        thresholds={"ratio": Threshold(0.10, "ratio"), "min_runs": Threshold(10, "runs")},
        expr="letta:runs_failed:ratio_rate5m > ${ratio}\n"
        "and on (job)\n"
        "sum by (job) (letta:runs:rate5m) * 300 >= ${min_runs}",
        summary="{{ $value | humanizePercentage }} of Letta agent runs are failing (job {{ $labels.job }}).",
        description="{{ $value | humanizePercentage }} of the Letta runs that finished in the last 5 "
        "minutes (job {{ $labels.job }}) failed, for ${for} (threshold ${ratio}, at least ${min_runs} "
        'runs per 5 minutes). The runs-overview dashboard\'s "Failures / s by stop reason" panel shows '
        "why (llm_api_error, error, ...) and its Agents table which agents.",
        fires_when="more than ${ratio} of the runs that finished in the last 5 min failed, with at least "
        "${min_runs} runs in those 5 min (per job)",
    ),
    Alert(
        name="LettaRunTTFTHigh",
        severity="warning",
        for_seconds=900,
        thresholds={"p95": Threshold(10, "seconds")},
        expr="letta:run_ttft_seconds:p95_rate5m > ${p95}",
        summary="Letta p95 time to first token is {{ $value | humanizeDuration }} (job {{ $labels.job }}).",
        description="The 95th percentile time to first token of Letta runs (job {{ $labels.job }}) has "
        "been {{ $value | humanizeDuration }} over the last 5 minutes, above ${p95} for ${for}. Users "
        "wait for the first token: check the LLM provider's latency and the agents' context size.",
        fires_when="the p95 time to first token over 5 min is above ${p95} (per job; runs without a TTFT "
        "are not counted)",
    ),
    Alert(
        name="LettaRunsStuck",
        severity="warning",
        for_seconds=300,
        thresholds={"age": Threshold(1800, "seconds")},
        expr="letta_active_run_max_age_seconds > ${age}",
        summary="A Letta run has been in flight for {{ $value | humanizeDuration }} "
        "({{ $labels.instance }}).",
        description="The oldest run still created or running, as seen by letta-exporter "
        "{{ $labels.instance }} (job {{ $labels.job }}), started {{ $value | humanizeDuration }} ago "
        "(threshold ${age}). It is probably stuck: find it with Letta's runs API (status running or "
        "created) and cancel it.",
        fires_when="the oldest run still created or running is older than ${age}",
    ),
    Alert(
        name="LettaSpendOverBudget",
        severity="warning",
        for_seconds=900,
        comment="Estimated spend against a daily budget: set it to yours in exporter/rules/alerts.py (one "
        "threshold; the dashboards draw it) and regenerate, or drop the alert. Prices: docs/cost.md.",
        thresholds={"budget": Threshold(100, "usd")},
        expr="sum by (job) (increase(letta_run_cost_usd_total[1d])) > ${budget}",
        summary='Letta agents spent {{ printf "%.2f" $value }} US dollars in the last 24 hours '
        "(job {{ $labels.job }}).",
        description="The Letta runs recorded by job {{ $labels.job }} cost an estimated "
        '{{ printf "%.2f" $value }} US dollars over the last 24 hours, above the ${budget} daily budget, '
        "for ${for}. The runs overview's Cost row shows which agents and models spend it. Estimates come "
        "from list prices or the exporter's price file (docs/cost.md); models without a price are not "
        "in them (letta_unpriced_tokens_total counts their tokens).",
        fires_when="the estimated spend of the last 24 hours (`letta_run_cost_usd_total`, per job) is above "
        "${budget}: a daily budget to set to your own (models without a price are not in it)",
    ),
)


def alert(name: str) -> Alert:
    # Read ALERTS at call time, so a test that swaps the declarations sees every reader follow.
    for declared in ALERTS:
        if declared.name == name:
            return declared
    raise KeyError(f"no alert {name} in exporter/rules/alerts.py")


def threshold(name: str, key: str) -> Threshold:
    """The threshold ``key`` of alert ``name``: what dashboards draw as the alert's line."""
    return alert(name).thresholds[key]
