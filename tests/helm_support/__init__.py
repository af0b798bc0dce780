"""Helpers for tests/test_helm.py: the real Helm binaries, rendering, and validation of what they
render against the Kubernetes schemas (kubernetes-validate, strict) and prometheus-operator's CRD
schemas (cloudcoil-models-prometheus-operator, generated from the CRDs; strict by a round trip that
catches fields the CRD does not know). The tools come from .ci/install-helm.sh; a missing one fails
the test (these are integration tests)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "letta-exporter"
PARENT_CHART = Path(__file__).resolve().parent / "letta-server-chart"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "letta"
RELEASE = "t"
MONITORING_APIS = (
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
# Oldest Kubernetes whose schemas kubernetes-validate knows (the chart's kubeVersion is 1.20, shown
# on a live 1.20 server by tests/test_k8s_live.py); native sidecars need 1.29.
K8S_MIN = "1.25.0"
K8S_MIN_NATIVE_SIDECAR = "1.29.0"


INSTALLER = ".ci/install-helm.sh"


def helm_binaries() -> list[Path]:
    """Helm 3 ($HELM or helm) and Helm 4 ($HELM4 or helm4)."""
    return [require_tool("helm", INSTALLER, "HELM"), require_tool("helm4", INSTALLER, "HELM4")]


def require_module(name: str) -> Any:
    """A validation library .ci/install-helm.sh installs into the venv; missing, the test fails."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.fail(f"{name} is not installed: run {INSTALLER}")


def run_helm(
    args: Sequence[str], helm: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    helm = helm or require_tool("helm", INSTALLER, "HELM")
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def template_args(
    chart: Path = CHART,
    values: Iterable[Path] = (),
    sets: Iterable[str] = (),
    api_versions: Iterable[str] = (),
    release: str = RELEASE,
    kube_version: str | None = None,
    namespace: str = NAMESPACE,
) -> list[str]:
    args = ["template", release, str(chart), "--namespace", namespace]
    if kube_version:
        args += ["--kube-version", kube_version]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


def parse(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def render(
    values: Iterable[Path] = (),
    sets: Iterable[str] = (),
    api_versions: Iterable[str] = MONITORING_APIS,
    chart: Path = CHART,
    helm: Path | None = None,
    kube_version: str | None = None,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """helm template of the chart; by default as in a cluster that serves the monitoring CRDs."""
    args = template_args(chart, values, sets, api_versions, kube_version=kube_version, namespace=namespace)
    proc = run_helm(args, helm)
    return parse(proc.stdout)


def of_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def one(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def exporter_container(pod_spec: dict[str, Any], name: str = "letta-exporter") -> dict[str, Any]:
    for container in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        if container["name"] == name:
            return container
    raise AssertionError(f"no container {name!r} in the pod spec")


def env_map(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (a string) or valueFrom (a dict)."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


def validate_core(doc: dict[str, Any], versions: Iterable[str]) -> None:
    """kubernetes-validate --strict against each Kubernetes version; raises on any problem."""
    kubernetes_validate = require_module("kubernetes_validate")

    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            raise AssertionError(f"{name} invalid for Kubernetes {version}: {path}: {exc.message}") from None


def _unknown_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        problems = [f"{path}.{key}".lstrip(".") for key in given if key not in kept]
        for key in given:
            if key in kept:
                problems += _unknown_fields(given[key], kept[key], f"{path}.{key}")
        return problems
    if isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return [path]
        problems = []
        for index, (a, b) in enumerate(zip(given, kept, strict=True)):
            problems += _unknown_fields(a, b, f"{path}[{index}]")
        return problems
    return []


def validate_crd(doc: dict[str, Any]) -> None:
    """Validate a ServiceMonitor/PodMonitor/PrometheusRule against prometheus-operator's CRD schema
    (types, enums, patterns, required fields) and reject fields the CRD does not define."""
    from pydantic import ValidationError

    v1 = require_module("cloudcoil.models.prometheus_operator.v1")

    assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["apiVersion"]
    model = getattr(v1, doc["kind"])
    try:
        parsed = model.model_validate(doc)
    except ValidationError as exc:
        raise AssertionError(
            f"{doc['kind']}/{doc['metadata']['name']} violates the CRD schema:\n{exc}"
        ) from None
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    unknown = _unknown_fields(doc, kept)
    assert not unknown, f"{doc['kind']}/{doc['metadata']['name']}: fields not in the CRD: {unknown}"


def validate_all(docs: Iterable[dict[str, Any]], versions: Iterable[str]) -> None:
    versions = list(versions)
    for doc in docs:
        if doc["kind"] in MONITORING_KINDS:
            validate_crd(doc)
        else:
            validate_core(doc, versions)


def parent_chart(tmp_path: Path, exporter_values: dict[str, Any]) -> tuple[Path, Path]:
    """A copy of the example Letta server chart with this chart in its charts/, and a values file
    that puts `exporter_values` under its `letta-exporter` key."""
    root = tmp_path / "letta-server"
    shutil.copytree(PARENT_CHART, root)
    shutil.copytree(CHART, root / "charts" / "letta-exporter")
    values = tmp_path / "parent-values.yaml"
    values.write_text(yaml.safe_dump({"letta-exporter": exporter_values}), encoding="utf-8")
    return root, values
