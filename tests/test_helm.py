"""The Helm chart (helm/letta-exporter), rendered by the real Helm binaries (Helm 3 and Helm 4 from
.ci/install-helm.sh) and checked against the real schemas: kubernetes-validate --strict for the core
objects, prometheus-operator's CRD schemas for ServiceMonitor/PodMonitor/PrometheusRule.

Integration tier: every test here drives Helm or the validators. The chart's files checked without
them (values documentation, the dashboards and rules it carries) are in tests/test_chart_files.py."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_support import (
    CHART,
    CI_VALUES,
    K8S_MIN,
    K8S_MIN_NATIVE_SIDECAR,
    MONITORING_APIS,
    NAMESPACE,
    RELEASE,
    REPO,
    env_map,
    exporter_container,
    helm_binaries,
    of_kind,
    one,
    parent_chart,
    parse,
    render,
    run_helm,
    template_args,
    validate_all,
    validate_core,
    validate_crd,
)
from tests.test_config import run_cli

pytestmark = pytest.mark.integration

K8S_MAX = "1.37.0"
CI_IDS = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
FULLNAME = f"{RELEASE}-letta-exporter"
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
RULE_FILES = sorted((REPO / "rules").glob("*.rules.y*ml"))
SLO_RULES = REPO / "rules" / "slo" / "default.rules.yml"  # prometheusRule.slo.enabled, on by default


def ci(name: str) -> Path:
    path = CHART / "ci" / f"{name}-values.yaml"
    assert path.exists(), path
    return path


def deployment_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


# --- lint and render every ci/ values file with both Helm majors ---------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_helm_lint(values: Path) -> None:
    for helm in helm_binaries():
        proc = run_helm(["lint", "--strict", str(CHART), "-f", str(values)], helm, check=False)
        assert proc.returncode == 0, f"{helm.name} lint {values.name}:\n{proc.stdout}{proc.stderr}"
        assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_template_validates_against_kubernetes_and_crd_schemas(values: Path) -> None:
    docs = render([values])
    assert docs, f"{values.name} rendered nothing"
    native = "native" in values.name
    validate_all(docs, [K8S_MIN_NATIVE_SIDECAR if native else K8S_MIN, K8S_MAX])
    for doc in docs:
        assert doc["metadata"].get("namespace", NAMESPACE) in (NAMESPACE, "monitoring"), doc["metadata"]
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "letta-exporter"


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_helm3_and_helm4_render_the_same_objects(values: Path) -> None:
    rendered = [render([values], helm=helm) for helm in helm_binaries()]
    key = lambda doc: (doc["kind"], doc["metadata"]["name"])  # noqa: E731
    assert sorted(rendered[0], key=key) == sorted(rendered[1], key=key)


def test_validators_reject_broken_objects() -> None:
    """The validation used above is not a no-op: it rejects a bad field, type and pattern."""
    docs = render([ci("monitoring")])
    deployment = json.loads(json.dumps(one(docs, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUsr"] = 1
    with pytest.raises(AssertionError, match="runAsUsr"):
        validate_core(deployment, [K8S_MAX])
    monitor = json.loads(json.dumps(one(docs, "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(AssertionError, match="interval"):
        validate_crd(monitor)
    monitor = json.loads(json.dumps(one(docs, "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["scrapeIntervall"] = "30s"
    with pytest.raises(AssertionError, match="scrapeIntervall"):
        validate_crd(monitor)


# --- values schema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("config.pageSize=many", "pageSize"),
        ("config.enrich.usage=maybe", "usage"),
        ("letta.apiKeyMount=header", "apiKeyMount"),
        ("mode=daemonset", "mode"),
        ("serviceMonitor.enabled=sometimes", "enabled"),
        ("config.backfill=yesterday", "backfill"),
        ("bogus=1", "bogus"),
        ("config.bogus=1", "bogus"),
    ],
)
def test_schema_rejects_wrong_types_and_unknown_keys(setting: str, complaint: str) -> None:
    for helm in helm_binaries():
        proc = run_helm(template_args(sets=[setting]), helm, check=False)
        assert proc.returncode != 0, f"{helm.name} accepted --set {setting}"
        assert complaint in proc.stderr, proc.stderr


def test_schema_accepts_what_users_pass_on_the_command_line() -> None:
    docs = render(
        sets=[
            "config.pollInterval=0.5",
            "config.backfill=30m",
            "config.discoveryOverlap=120",
            "serviceMonitor.enabled=true",
            "prometheusRule.enabled=false",
            "image.tag=0.2.0",
            "enabled=true",  # a parent chart's dependency condition
        ]
    )
    env = env_map(exporter_container(deployment_pod(docs)))
    assert env["LETTA_EXPORTER_POLL_INTERVAL"] == "0.5"
    assert env["LETTA_EXPORTER_BACKFILL"] == "30m"


# --- security ------------------------------------------------------------------------------------


def assert_hardened_container(container: dict[str, Any]) -> None:
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    assert isinstance(sc["runAsGroup"], int) and sc["runAsGroup"] > 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_defaults_are_hardened() -> None:
    docs = render()
    pod = deployment_pod(docs)
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001 and psc["fsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))
    container = exporter_container(pod)
    assert_hardened_container(container)
    # Writable places are volumes, never the root filesystem: /tmp and the state directory.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/var/lib/letta-exporter"]]
    assert not any("hostPath" in v for v in pod["volumes"])
    env = env_map(container)
    assert env["LETTA_EXPORTER_STATE_FILE"] == "/var/lib/letta-exporter/state.json"
    # Resources, probes.
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"] == "http-metrics"
    assert container["ports"][0]["containerPort"] == 8284
    assert container["image"] == "letta-exporter:0.1.0"


def test_hardening_off_drops_the_fixed_ids() -> None:
    docs = render([ci("hardening-off")])
    pod = deployment_pod(docs)
    container = exporter_container(pod)
    assert "securityContext" not in pod and "securityContext" not in container
    assert not of_kind(docs, "ServiceAccount") and not of_kind(docs, "Service")
    assert pod["serviceAccountName"] == "default"
    assert "LETTA_EXPORTER_STATE_FILE" not in env_map(container)
    assert not any(p in container for p in ("livenessProbe", "readinessProbe", "startupProbe"))


def test_hardening_max_options() -> None:
    docs = render([ci("hardening-max")])
    pod = deployment_pod(docs)
    container = exporter_container(pod)
    assert_hardened_container(container)
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    # NetworkPolicy: metrics port from the monitoring namespace only; egress restricted + DNS.
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert {"port": 53, "protocol": "UDP"} in policy["egress"][0]["ports"]
    assert any(p.get("port") == 443 for rule in policy["egress"] for p in rule.get("ports", []))
    # PDB and PVC.
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "256Mi"
    state = next(v for v in pod["volumes"] if v["name"] == "letta-exporter-state")
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # Web config: secret mounted, env var set, probes switch to HTTPS, ServiceMonitor scrapes HTTPS.
    env = env_map(container)
    assert env["LETTA_EXPORTER_WEB_CONFIG_FILE"] == "/etc/letta-exporter/web/web-config.yml"
    web = next(v for v in pod["volumes"] if v["name"] == "letta-exporter-web")
    assert web["secret"]["secretName"] == "letta-exporter-web"
    assert {
        "name": "letta-exporter-web",
        "mountPath": "/etc/letta-exporter/web",
        "readOnly": True,
    } in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert (
        endpoint["scheme"] == "https" and endpoint["basicAuth"]["username"]["name"] == "letta-exporter-scrape"
    )
    # OTLP.
    assert env["LETTA_EXPORTER_TRACES"] == "true"
    assert env["LETTA_EXPORTER_TRACE_SYNTHESIS"] == "true"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {"secretKeyRef": {"name": "otlp-auth", "key": "headers"}}
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=production"
    assert container["args"] == ["--log-level=info"]
    # Numbers keep their form.
    assert env["LETTA_EXPORTER_POLL_INTERVAL"] == "2.5"
    assert env["LETTA_EXPORTER_TTFT_BUCKETS"] == "0.05,0.1,0.25,0.5,1,2.5,5,10"
    assert env["LETTA_EXPORTER_ENRICH_STEPS"] == "false"


# --- API key wiring ------------------------------------------------------------------------------


def test_api_key_creates_a_secret_mounted_as_a_file() -> None:
    docs = render(sets=["letta.apiKey=sk-unit-test-key"])
    secret = one(docs, "Secret")
    assert secret["metadata"]["name"] == FULLNAME
    assert base64.b64decode(secret["data"]["api-key"]).decode() == "sk-unit-test-key"
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = exporter_container(pod)
    env = env_map(container)
    assert env["LETTA_API_KEY_FILE"] == "/etc/letta-exporter/secrets/api-key"
    assert "LETTA_API_KEY" not in env
    volume = next(v for v in pod["volumes"] if v["name"] == "letta-exporter-api-key")
    assert volume["secret"]["secretName"] == FULLNAME
    assert volume["secret"]["items"] == [{"key": "api-key", "path": "api-key"}]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "letta-exporter-api-key")
    assert mount == {
        "name": "letta-exporter-api-key",
        "mountPath": "/etc/letta-exporter/secrets",
        "readOnly": True,
    }
    # Readable by the pod's fsGroup only (0440), and a key change rolls the pod.
    assert volume["secret"]["defaultMode"] == 0o440
    assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    assert "sk-unit-test-key" not in yaml.safe_dump(deployment)


def test_api_key_as_environment_variable() -> None:
    docs = render(sets=["letta.apiKey=sk-unit-test-key", "letta.apiKeyMount=env", "letta.secretKey=token"])
    secret = one(docs, "Secret")
    assert set(secret["data"]) == {"token"}
    pod = deployment_pod(docs)
    env = env_map(exporter_container(pod))
    assert env["LETTA_API_KEY"] == {"secretKeyRef": {"name": FULLNAME, "key": "token"}}
    assert "LETTA_API_KEY_FILE" not in env
    assert not any(v["name"] == "letta-exporter-api-key" for v in pod["volumes"])


def test_existing_secret() -> None:
    docs = render([ci("existing-secret")])
    assert not of_kind(docs, "Secret")
    pod = deployment_pod(docs)
    env = env_map(exporter_container(pod))
    assert env["LETTA_API_KEY_FILE"] == "/etc/letta-exporter/secrets/api-key"
    volume = next(v for v in pod["volumes"] if v["name"] == "letta-exporter-api-key")
    assert volume["secret"]["secretName"] == "letta-api-key"
    assert volume["secret"]["items"] == [{"key": "api-key", "path": "api-key"}]
    assert "checksum/secret" not in one(docs, "Deployment")["spec"]["template"]["metadata"].get(
        "annotations", {}
    )

    docs = render([ci("existing-secret")], sets=["letta.apiKeyMount=env", "letta.secretKey=key"])
    env = env_map(exporter_container(deployment_pod(docs)))
    assert env["LETTA_API_KEY"] == {"secretKeyRef": {"name": "letta-api-key", "key": "key"}}


def test_no_key_for_a_self_hosted_server() -> None:
    docs = render(sets=["letta.baseUrl=http://letta.letta.svc:8283"])
    assert not of_kind(docs, "Secret")
    pod = deployment_pod(docs)
    env = env_map(exporter_container(pod))
    assert env["LETTA_BASE_URL"] == "http://letta.letta.svc:8283"
    assert "LETTA_API_KEY" not in env and "LETTA_API_KEY_FILE" not in env
    assert not any(v["name"] == "letta-exporter-api-key" for v in pod["volumes"])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["letta.apiKey=a", "letta.existingSecret=b"], "mutually exclusive"),
        (["mode=sidecar", "podMonitor.enabled=true"], "sidecar.podSelector"),
        (["sidecar.native=true"], "mode=sidecar"),
    ],
)
def test_contradictory_values_fail_with_a_message(sets: list[str], message: str) -> None:
    proc = run_helm(template_args(sets=sets), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# --- every exporter setting is reachable and accepted by the exporter ----------------------------


def exporter_envs(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return env_map(exporter_container(deployment_pod(docs)))


# Settings the chart deliberately does not set itself (extraEnv reaches them).
NOT_IN_CHART: set[str] = set()


def test_every_exporter_setting_is_reachable_through_values() -> None:
    from exporter.config import Settings, env_name

    seen: set[str] = set()
    for values, sets in [
        ([], []),
        ([ci("hardening-max")], []),
        (
            [],
            [
                "letta.apiKey=k",
                "config.ttftBuckets={0.1,1}",
                "config.durationBuckets={1,10}",
                "otlp.reparentOrphans=true",
                "otlp.attributeDenylist=parameter.*",
                "otlp.probeInterval=5m",
                "config.maxRequestsPerSecond=400",
                "config.priceFile=/etc/letta-exporter/prices.yaml",
            ],
        ),
    ]:
        seen |= set(exporter_envs(render(values, sets)))
    wanted = {env_name(name) for name in Settings.model_fields} - NOT_IN_CHART
    assert wanted - seen == set(), (
        "exporter settings the chart cannot set: add a value (values.yaml, templates/_container.tpl, "
        "values.schema.json) or list the variable in NOT_IN_CHART (users reach it through extraEnv)"
    )


@pytest.mark.parametrize("values", [v for v in CI_VALUES if "sidecar" not in v.name], ids=lambda p: p.name)
def test_rendered_environment_is_accepted_by_the_exporter(
    values: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter.config import load_settings

    env = exporter_envs(render([values]))
    for name in list(os.environ):
        if name.startswith(("LETTA_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    key_file = tmp_path / "api-key"
    key_file.write_text("sk-from-file\n")
    for name, value in env.items():
        if name == "LETTA_API_KEY_FILE":
            value = str(key_file)
        elif isinstance(value, dict):
            value = "from-a-secret"
        elif name == "LETTA_EXPORTER_STATE_FILE":
            value = str(tmp_path / "state.json")
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.base_url == env["LETTA_BASE_URL"].rstrip("/")
    assert settings.port == 8284
    if "LETTA_API_KEY_FILE" in env:
        assert settings.api_key_value() == "sk-from-file"


def test_large_numbers_are_not_rendered_in_exponent_form() -> None:
    env = exporter_envs(render(sets=["config.maxPending=1000000", "config.maxAgents=2500000"]))
    assert env["LETTA_EXPORTER_MAX_PENDING"] == "1000000"
    assert env["LETTA_EXPORTER_MAX_AGENTS"] == "2500000"


# --- Prometheus Operator objects -----------------------------------------------------------------


def test_monitoring_objects_follow_the_cluster_api() -> None:
    without = render(api_versions=())
    assert not [d for d in without if d["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule")]
    with_crds = render()
    assert len(of_kind(with_crds, "ServiceMonitor")) == 1
    assert len(of_kind(with_crds, "PrometheusRule")) == (1 if RULE_FILES else 0)
    assert not of_kind(with_crds, "PodMonitor")  # off unless asked for
    forced = render(api_versions=(), sets=["serviceMonitor.enabled=true", "podMonitor.enabled=true"])
    assert len(of_kind(forced, "ServiceMonitor")) == 1 and len(of_kind(forced, "PodMonitor")) == 1
    off = render(sets=["serviceMonitor.enabled=false", "prometheusRule.enabled=false"])
    assert not of_kind(off, "ServiceMonitor") and not of_kind(off, "PrometheusRule")


def test_service_monitor_selects_the_service_and_carries_the_release_label() -> None:
    docs = render([ci("monitoring")])
    service = one(docs, "Service")
    monitor = one(docs, "ServiceMonitor")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    # Prometheus (kube-prometheus-stack release "prom") selects the monitor by its release label.
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["metadata"]["labels"]["team"] == "ml-platform"
    # The monitor selects our Service, in our namespace, on the Service's port name.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s" and endpoint["scrapeTimeout"] == "10s"
    assert endpoint["relabelings"][0]["targetLabel"] == "letta_env"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    # The Service reaches the pod: selector and target port.
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container = exporter_container(deployment_pod(docs))
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert service["spec"]["publishNotReadyAddresses"] is True
    # Default release label is kube-prometheus-stack's default release name.
    default = one(render(), "ServiceMonitor")
    assert default["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_pod_monitor_in_deployment_mode_selects_our_pod() -> None:
    docs = render(sets=["podMonitor.enabled=true"])
    monitor = one(docs, "PodMonitor")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http-metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    validate_crd(monitor)


# --- dashboards and rules: the chart carries exactly the repository's files ----------------------


def test_dashboard_configmaps_carry_exactly_the_repository_json() -> None:
    if not DASHBOARDS:
        pytest.skip("dashboards/ does not exist yet")
    docs = render([ci("monitoring")])
    maps = [m for m in of_kind(docs, "ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(maps) == len(DASHBOARDS)
    by_file = {name: m for m in maps for name in m["data"]}
    assert sorted(by_file) == sorted(p.name for p in DASHBOARDS)
    for path in DASHBOARDS:
        cm = by_file[path.name]
        assert len(cm["data"]) == 1
        text = cm["data"][path.name]
        assert text == path.read_text(encoding="utf-8").rstrip("\n")
        assert json.loads(text) == json.loads(path.read_text(encoding="utf-8"))
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "Letta"
        validate_core(cm, [K8S_MIN, K8S_MAX])
        assert len(json.dumps(cm).encode()) < 1024 * 1024, "ConfigMaps hold at most 1 MiB"
    # Label, value and folder annotation are configurable; dashboards can be switched off.
    custom = render(
        sets=[
            "dashboards.label=dash",
            "dashboards.labelValue=yes",
            "dashboards.folderAnnotation=k8s-sidecar-target-directory",
            "dashboards.folder=/tmp/dashboards/letta",
        ]
    )
    for cm in of_kind(custom, "ConfigMap"):
        assert (
            cm["metadata"]["labels"]["dash"] == "yes" and "grafana_dashboard" not in cm["metadata"]["labels"]
        )
        assert cm["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "/tmp/dashboards/letta"}
        assert cm["metadata"]["namespace"] == NAMESPACE
    assert not of_kind(render(sets=["dashboards.enabled=false"]), "ConfigMap")


def repo_rule_groups(slo: Path | None = SLO_RULES) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in [*RULE_FILES, *([slo] if slo else [])]:
        groups += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def test_prometheus_rule_carries_exactly_the_repository_rules() -> None:
    if not RULE_FILES:
        pytest.skip("rules/ does not exist yet")
    rule = one(render(), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == repo_rule_groups()
    validate_crd(rule)


def test_prometheus_rule_options() -> None:
    if not RULE_FILES:
        pytest.skip("rules/ does not exist yet")
    groups = repo_rule_groups()
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    assert alerts, "the repository's rules have no alerts"
    docs = render(
        [ci("monitoring")],
        sets=[f"prometheusRule.disabledAlerts={{{alerts[0]}}}"],
    )
    rule = one(docs, "PrometheusRule")
    validate_crd(rule)
    rendered = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts[0] not in [r.get("alert") for r in rendered]
    assert len(rendered) == sum(len(g["rules"]) for g in groups) - 1
    # Alert names repeat across groups (each SLO group has its burn-rate pair): pair rules by group.
    originals = {g["name"]: [o for o in g["rules"] if o.get("alert") != alerts[0]] for g in groups}
    for group in rule["spec"]["groups"]:
        for r, original in zip(group["rules"], originals[group["name"]], strict=True):
            if "alert" in r:
                assert r["labels"]["team"] == "ml-platform"
                # The rule's own labels (severity, slo) are kept.
                assert original.get("labels", {}).items() <= r["labels"].items()
            else:
                assert r.get("labels", {}) == original.get("labels", {})


def test_prometheus_rule_slo_rules_default_off_or_your_own(tmp_path: Path) -> None:
    """The default objectives' rules ship unless switched off; an operator's own, generated with
    `letta-exporter slo-rules` and passed with --set-file, replace them and follow the same options."""
    assert not any(g["name"].startswith("letta-exporter.slo.") for g in repo_rule_groups(slo=None))
    off = one(render(sets=["prometheusRule.slo.enabled=false"]), "PrometheusRule")
    assert off["spec"]["groups"] == repo_rule_groups(slo=None)

    slo_file = tmp_path / "team-slos.yaml"
    slo_file.write_text(
        "objectives:\n"
        "  - {name: support-success, sli: success, objective: 99.5, agents: {name: 'support-.*'}}\n"
    )
    own = tmp_path / "team-slo.rules.yml"
    result = run_cli("slo-rules", str(slo_file), "-o", str(own), env={})
    assert result.returncode == 0, result.stderr
    args = template_args(
        sets=[
            "prometheusRule.disabledAlerts={LettaSLOSlowBurn}",
            "prometheusRule.additionalRuleLabels.team=support",
        ],
        api_versions=MONITORING_APIS,
    )
    for helm in helm_binaries():
        docs = parse(run_helm([*args, "--set-file", f"prometheusRule.slo.rules={own}"], helm).stdout)
        rule = one(docs, "PrometheusRule")
        validate_crd(rule)
        groups = rule["spec"]["groups"]
        assert [g["name"] for g in groups] == [
            *(g["name"] for g in repo_rule_groups(slo=None)),
            "letta-exporter.slo.support-success",
        ]
        slo_alerts = [r for r in groups[-1]["rules"] if "alert" in r]
        assert [r["alert"] for r in slo_alerts] == ["LettaSLOFastBurn"]
        assert slo_alerts[0]["labels"] == {
            "severity": "critical",
            "slo": "support-success",
            "team": "support",
        }

    not_rules = tmp_path / "values.yaml"
    not_rules.write_text("objectives: []\n")
    proc = run_helm([*args, "--set-file", f"prometheusRule.slo.rules={not_rules}"], check=False)
    assert proc.returncode != 0 and "prometheusRule.slo.rules: no groups: list" in proc.stderr


def test_rules_and_dashboards_templates_with_sample_files(tmp_path: Path) -> None:
    """The templates work on any dashboards/rules, independent of the repository's current ones."""
    import shutil

    chart = tmp_path / "letta-exporter"
    shutil.copytree(CHART, chart)
    for sub in ("dashboards", "rules"):
        shutil.rmtree(chart / sub, ignore_errors=True)
        (chart / sub).mkdir()
    dashboard = {
        "title": "Sample {{ not a template }}",
        "panels": [{"targets": [{"expr": 'rate(x{a="b"}[5m])'}]}],
    }
    (chart / "dashboards" / "Sample_Board.json").write_text(json.dumps(dashboard, indent=2))
    rules = {
        "groups": [
            {
                "name": "sample",
                "interval": "1m",
                "rules": [
                    {"record": "job:x:rate5m", "expr": "sum by (job) (rate(x[5m]))"},
                    {
                        "alert": "XHigh",
                        "expr": "job:x:rate5m > 1",
                        "for": "10m",
                        "labels": {"severity": "warning"},
                        "annotations": {"summary": "x is {{ $value }} on {{ $labels.job }}"},
                    },
                ],
            }
        ]
    }
    (chart / "rules" / "sample.rules.yml").write_text(yaml.safe_dump(rules))
    extra = "prometheusRule.extraGroups[0]"
    docs = render(
        chart=chart,
        sets=[f"{extra}.name=extra", f"{extra}.rules[0].record=y", f"{extra}.rules[0].expr=vector(1)"],
    )
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["name"] == f"{FULLNAME}-dashboard-sample-board"
    assert json.loads(cm["data"]["Sample_Board.json"]) == dashboard
    rule = one(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == [
        *rules["groups"],
        {"name": "extra", "rules": [{"record": "y", "expr": "vector(1)"}]},
    ]
    validate_crd(rule)


# --- sidecar -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sidecar", "sidecar-native"])
def test_sidecar_mode_renders_no_workload(name: str) -> None:
    docs = render([ci(name)])
    assert not [d for d in docs if d["kind"] in ("Deployment", "Service", "ServiceAccount")]
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "letta-server"}
    validate_crd(monitor)


@pytest.mark.parametrize("name", ["sidecar", "sidecar-native"])
def test_sidecar_templates_render_a_valid_container_in_a_parent_chart(name: str, tmp_path: Path) -> None:
    exporter_values = yaml.safe_load(ci(name).read_text())
    chart, values = parent_chart(tmp_path, exporter_values)
    run_helm(["lint", "--strict", str(chart), "-f", str(values)])
    docs = render([values], chart=chart)
    deployment = next(
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == f"{RELEASE}-letta-server"
    )
    assert len(of_kind(docs, "Deployment")) == 1, "the exporter chart must not add its own Deployment"
    native = exporter_values["sidecar"].get("native", False)
    validate_core(deployment, [K8S_MIN_NATIVE_SIDECAR if native else K8S_MIN, K8S_MAX])
    pod = deployment["spec"]["template"]["spec"]
    container_name = exporter_values["sidecar"].get("containerName", "letta-exporter")
    container = exporter_container(pod, container_name)
    if native:
        assert container in pod["initContainers"] and container["restartPolicy"] == "Always"
        assert [c["name"] for c in pod["containers"]] == ["letta"]
    else:
        assert "initContainers" not in pod
        assert [c["name"] for c in pod["containers"]] == ["letta", container_name]
        assert "restartPolicy" not in container
    assert_hardened_container(container)
    env = env_map(container)
    assert env["LETTA_BASE_URL"] == "http://localhost:8283"
    assert container["image"] == "letta-exporter:0.1.0"  # this chart's version, not the parent's
    # Its probes keep it alive but never take the Letta pod out of its Service.
    assert "readinessProbe" not in container and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Every volume it mounts is in the pod; port names are unique in the pod.
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes
    all_ports = [
        p["name"] for c in pod.get("initContainers", []) + pod["containers"] for p in c.get("ports", [])
    ]
    assert len(all_ports) == len(set(all_ports))
    if exporter_values["letta"].get("existingSecret"):
        assert env["LETTA_API_KEY_FILE"] == "/etc/letta-exporter/secrets/password"
        secret_volume = volumes["letta-exporter-api-key"]["secret"]
        assert secret_volume["secretName"] == "letta-server-password"
        assert secret_volume["defaultMode"] == 0o444  # the parent pod may set no fsGroup
    # The PodMonitor the sub-chart renders finds the parent's pod and its port.
    monitor = one(docs, "PodMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == container["ports"][0]["name"]
    validate_all(docs, [K8S_MIN_NATIVE_SIDECAR if native else K8S_MIN, K8S_MAX])


# --- what the cluster's version decides ----------------------------------------------------------

OLD_K8S = "1.20.2"  # the oldest the chart supports, and what tests/test_k8s_live.py runs


def test_chart_requires_kubernetes_1_20() -> None:
    proc = run_helm(template_args(kube_version="1.19.16"), check=False)
    assert proc.returncode != 0 and "incompatible with Kubernetes v1.19.16" in proc.stderr, proc.stderr
    assert render([ci("hardening-max")], kube_version=OLD_K8S)


@pytest.mark.parametrize(
    ("kube_version", "api"), [(OLD_K8S, "policy/v1beta1"), ("1.21.0", "policy/v1"), (None, "policy/v1")]
)
def test_pod_disruption_budget_api_follows_the_cluster(kube_version: str | None, api: str) -> None:
    docs = render(sets=["podDisruptionBudget.enabled=true"], kube_version=kube_version)
    assert one(docs, "PodDisruptionBudget")["apiVersion"] == api


@pytest.mark.parametrize(("kube_version", "native"), [(OLD_K8S, False), ("1.28.15", False), ("1.29.0", True)])
def test_native_sidecar_only_where_the_cluster_has_it(
    kube_version: str, native: bool, tmp_path: Path
) -> None:
    """Before 1.29 the API server drops an init container's restartPolicy, and the exporter would
    block the pod as an init container that never ends: there it stays a regular container."""
    chart, values = parent_chart(tmp_path, yaml.safe_load(ci("sidecar-native").read_text()))
    docs = render([values], chart=chart, kube_version=kube_version)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = exporter_container(pod, "metrics-exporter")
    if native:
        assert pod["initContainers"] == [container] and container["restartPolicy"] == "Always"
        assert [c["name"] for c in pod["containers"]] == ["letta"]
    else:
        assert "initContainers" not in pod and "restartPolicy" not in container
        assert [c["name"] for c in pod["containers"]] == ["letta", "metrics-exporter"]


def test_dashboard_configmaps_are_unique_per_release_and_namespace() -> None:
    """Same-named releases in two namespaces, dashboards gathered in a third: no name is shared."""

    def names(namespace: str, *sets: str) -> set[str]:
        docs = render(sets=["dashboards.namespace=grafana", *sets], namespace=namespace)
        return {cm["metadata"]["name"] for cm in of_kind(docs, "ConfigMap")}

    team_a, team_b = names("team-a"), names("team-b")
    assert len(team_a) == len(team_b) == len(DASHBOARDS) and not team_a & team_b
    assert all(name.startswith(f"{FULLNAME}-team-a-dashboard-") for name in team_a)
    # In the release's own namespace the names stay as they were.
    assert names("grafana") == {f"{FULLNAME}-dashboard-{path.stem}" for path in DASHBOARDS}
    # Names past 63 characters are cut and end in a hash of the whole, so they stay distinct.
    long = [names(ns, "fullnameOverride=" + "x" * 50) for ns in ("team-a", "team-b")]
    assert all(len(name) <= 63 for name in long[0] | long[1])
    assert len(long[0]) == len(DASHBOARDS) and not long[0] & long[1]


# --- chart metadata and documentation ------------------------------------------------------------


def test_chart_versions_match_the_exporter() -> None:
    from exporter import __version__

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    assert exporter_container(deployment_pod(render()))["image"] == f"letta-exporter:{__version__}"


def render_notes(tmp_path: Path, sets: list[str]) -> str:
    """NOTES.txt as Helm renders it. `helm template` skips NOTES and `helm install --dry-run` wants a
    cluster, so a copy of the chart renders the same text into a ConfigMap."""
    import shutil

    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        notes = (CHART / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "_notes_check.tpl").write_text(
            '{{- define "notes.check" -}}\n' + notes + "\n{{- end }}\n"
        )
        (chart / "templates" / "notes-check.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-check\n"
            'data:\n  notes: {{ include "notes.check" . | quote }}\n'
        )
    docs = render(chart=chart, sets=sets, api_versions=())
    return next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "notes-check")["data"][
        "notes"
    ]


def test_notes_tell_how_to_reach_metrics(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, [])
    assert f"port-forward deploy/{FULLNAME} 8284:http-metrics" in notes
    assert "curl -s http://127.0.0.1:8284/metrics" in notes
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:8284/metrics" in notes
    assert "WARNING: no API key" in notes  # Letta Cloud without a key
    assert "monitoring.coreos.com/v1 API was not found" in notes
    assert "image letta-exporter:0.1.0 is not published" in notes
    assert "docker build -t <registry>/letta-exporter:0.1.0 ." in notes
    assert "--set image.repository=<registry>/letta-exporter" in notes
    notes = render_notes(tmp_path, ["letta.existingSecret=k", "image.repository=registry.example.com/le"])
    assert "WARNING" not in notes and "not published" not in notes
    notes = render_notes(tmp_path, ["mode=sidecar", "letta.baseUrl=http://localhost:8283"])
    assert "letta-exporter.sidecar.containers" in notes and "WARNING" not in notes


def test_documented_plain_sidecar_pod_is_valid() -> None:
    """The hand-written sidecar example in docs/deploy.md."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8").split("<!-- sidecar-pod-example", 1)[1]
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    pod = yaml.safe_load(block)
    validate_core(pod, [K8S_MIN, K8S_MAX])
    container = exporter_container(pod["spec"])
    assert_hardened_container(container)
    assert env_map(container)["LETTA_BASE_URL"] == "http://localhost:8283"
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"/tmp", "/var/lib/letta-exporter"} <= set(mounts) and set(mounts.values()) <= volumes
