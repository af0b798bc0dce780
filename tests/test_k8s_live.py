"""The Helm chart on a real Kubernetes: kube-apiserver, controller-manager, scheduler and a kubelet
with containerd, v1.20.2, started on this machine by .ci/k8s/up.sh and stopped by .ci/k8s/down.sh
(the `kube` fixture does both). The image is built from the project's Dockerfile and loaded into
the node's containerd: nothing is pulled.

- standalone: the chart's Deployment against a Letta simulator in its own pod; the pod gets Ready,
  the Service's Endpoints list it, /metrics (by pod IP and through `kubectl port-forward` as NOTES
  says) counts runs; ServiceMonitor, PodMonitor, PrometheusRule and a policy/v1beta1 PDB are
  accepted; upgrade drops what it no longer renders and uninstall leaves nothing labelled;
- sidecar: the example parent chart (tests/helm_support/letta-server-chart) with the simulator as
  its Letta container and the exporter from this chart's named templates; once the simulator has
  made its fixed number of runs, the sidecar's /metrics equals the simulator's ground truth;
- every ci/*-values.yaml installs and uninstalls, leaving only the state PVC the chart keeps on
  purpose (helm.sh/resource-policy: keep); same-named releases install in two namespaces, sharing
  a dashboards namespace.

Cluster limits: no DNS, no kube-proxy (pods are reached by IP on the node's bridge, 10.244.77.0/24,
or by port-forward), and 1.20 has no native sidecars: `sidecar.native: true` is rendered there as a
regular container, which the sidecar test checks; the native init container itself is covered by
rendering for 1.29+ and schema validation in tests/test_helm.py.

Costs (2 cores, measured on a machine shared with other test runs): .ci/install-k8s.sh builds the
cluster once per machine and caches it in /var/tmp/letta-exporter-k8s; from an empty cache that
took 8 min 24 s (apt packages, Debian's source package, then kube-apiserver, controller-manager,
scheduler, kubelet and kubectl from source: 488 s of it), and 0.1 s once cached. A warm cluster
start takes 16-18 s; this whole module 2 min (cluster up, image build with a warm Docker cache, the
four tests, cluster down). It runs with LETTA_EXPORTER_K8S_TESTS=1, as root (scripts/test.sh sets it
when the cluster is built and Docker answers).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.labels import enum_label
from tests.helm_support import CHART, CI_VALUES, PARENT_CHART, REPO, require_tool
from tests.support import free_port, parse_metrics, runs_counted, select
from tests.test_docker import base_image, docker, wait_for

K8S_ENABLED = os.environ.get("LETTA_EXPORTER_K8S_TESTS") == "1"
K8S_DIR = REPO / ".ci" / "k8s"
K8S_HOME = Path(os.environ.get("LETTA_EXPORTER_K8S_HOME", "/var/tmp/letta-exporter-k8s"))
# Every port the cluster's daemons listen on (127.0.0.1 only); closed again after down.sh.
CLUSTER_PORTS = (2379, 2380, 2381, 6443, 10248, 10250, 10257, 10259)
SIM_PORT = 8283
METRICS_PORT = 8284
# What a release leaves in the cluster, by its app.kubernetes.io/instance label.
RELEASE_KINDS = (
    "deployments,replicasets,pods,services,endpoints,serviceaccounts,secrets,configmaps,"
    "persistentvolumeclaims,poddisruptionbudgets,networkpolicies,servicemonitors,podmonitors,prometheusrules"
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.k8s,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not K8S_ENABLED, reason="set LETTA_EXPORTER_K8S_TESTS=1 (needs root, .ci/install-k8s.sh)"
    ),
]


def run(
    args: list[str | Path],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    command = [str(a) for a in args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


@dataclass
class Kube:
    env: dict[str, str]
    helm_bin: Path

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        return run(["kubectl", *args], env=self.env, input=input, timeout=timeout).stdout

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str | Path, timeout: float = 240) -> str:
        return run([self.helm_bin, *args], env=self.env, timeout=timeout).stdout

    def apply(self, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(doc) for doc in docs))

    def ready_pod(self, namespace: str, selector: str, timeout: float = 180) -> dict[str, Any]:
        """The one pod matching the label selector, once it is Ready."""

        def ready() -> dict[str, Any] | None:
            pods = self.get("pods", "-n", namespace, "-l", selector)["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            if len(live) == 1 and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in live[0]["status"].get("conditions", [])
            ):
                return live[0]
            return None

        return wait_for(ready, timeout, f"one Ready pod {selector} in {namespace}")

    def running_pod(self, namespace: str, selector: str, timeout: float = 120) -> None:
        """Until the pods matching the selector have all their containers started."""

        def running() -> bool:
            pods = self.get("pods", "-n", namespace, "-l", selector)["items"]
            return bool(pods) and all(
                s.get("started") for p in pods for s in p["status"].get("containerStatuses", [{}])
            )

        wait_for(running, timeout, f"the pods {selector} in {namespace} to run")

    def leftovers(self, release: str) -> list[str]:
        """Everything in any namespace still labelled as part of the release."""
        selector = f"app.kubernetes.io/instance={release}"
        return self.kubectl("get", RELEASE_KINDS, "-A", "-l", selector, "-o", "name").split()

    def assert_nothing_left(self, *releases: str, kept: tuple[str, ...] = ()) -> None:
        """Nothing of the releases remains but `kept` (what the chart keeps on purpose)."""
        left: list[str] = []

        def gone() -> bool:
            left[:] = [name for release in releases for name in self.leftovers(release) if name not in kept]
            return not left

        try:
            wait_for(gone, 90, f"the objects of {releases} to go")
        except AssertionError:
            raise AssertionError(f"left behind after uninstall: {left}") from None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    """A running cluster with the Prometheus Operator CRDs; every daemon it starts is stopped after."""
    if os.geteuid() != 0:
        pytest.fail("the cluster needs root (containerd, kubelet, a network bridge)")
    if not (K8S_HOME / "bin" / "kubelet").exists():
        pytest.fail(f"no cluster build in {K8S_HOME}: run .ci/install-k8s.sh")
    busy = [port for port in CLUSTER_PORTS if port_open(port)]
    if busy:
        pytest.fail(f"ports {busy} are taken: another cluster runs on this machine")
    env = {**os.environ, "KUBECONFIG": str(K8S_HOME / "run" / "kubeconfig"),
           "PATH": f"{K8S_HOME / 'bin'}:{os.environ['PATH']}", "PYTHON": sys.executable}  # fmt: skip
    helm = require_tool("helm", "HELM")
    try:
        started = time.monotonic()
        run([K8S_DIR / "up.sh"], env=env, timeout=300)
        print(f"cluster up in {time.monotonic() - started:.1f}s")
        run([K8S_DIR / "crds.sh"], env=env, timeout=120)
        yield Kube(env, helm)
    finally:
        down = run([K8S_DIR / "down.sh"], env=env, timeout=120, check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [port for port in CLUSTER_PORTS if port_open(port)], (
            "cluster ports still open after down.sh"
        )


@pytest.fixture(scope="module")
def image(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(repository, tag) of the image built from the Dockerfile, loaded into the node's containerd."""
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        pytest.fail("no Docker engine answers: run .ci/install-docker.sh")
    if docker("image", "inspect", base_image(), check=False).returncode != 0:
        pytest.fail(f"base image {base_image()} missing: run .ci/install-docker.sh")
    repository, tag = "letta-exporter", f"k8s-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    docker("build", "--network", "host", "--pull=false", "-t", f"{repository}:{tag}", str(REPO), timeout=480)
    try:
        archive = tmp_path_factory.mktemp("image") / "letta-exporter.tar"
        docker("save", "-o", str(archive), f"{repository}:{tag}", timeout=120)
        run([K8S_DIR / "load-image.sh", archive], env=kube.env, timeout=120)
        archive.unlink()
        print(f"image built and loaded in {time.monotonic() - started:.1f}s")
        yield repository, tag
    finally:
        docker("image", "rm", "--force", f"{repository}:{tag}", check=False)


def image_values(image: tuple[str, str]) -> list[str]:
    return ["--set", f"image.repository={image[0]}", "--set", f"image.tag={image[1]}",
            "--set", "image.pullPolicy=Never"]  # fmt: skip


def simulator_args(*extra: str) -> list[str]:
    return ["-m", "exporter.simulator", "--host", "0.0.0.0", "--port", str(SIM_PORT), *extra]


def simulator_pod(name: str, namespace: str, image: tuple[str, str], *args: str) -> dict[str, Any]:
    """A Letta stand-in: the simulator from the same image, in a pod of its own."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": "letta",
                    "image": f"{image[0]}:{image[1]}",
                    "imagePullPolicy": "Never",
                    "command": ["python"],
                    "args": simulator_args(*args),
                    "ports": [{"name": "http", "containerPort": SIM_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/v1/health/", "port": SIM_PORT},
                        "periodSeconds": 1,
                    },
                    "securityContext": {
                        "runAsNonRoot": True,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                    },
                }
            ]
        },
    }


def metrics(ip: str, port: int = METRICS_PORT) -> dict:
    response = httpx.get(f"http://{ip}:{port}/metrics", timeout=5)
    response.raise_for_status()
    return parse_metrics(response.text)


def kinds_in_manifest(manifest: str) -> dict[str, str]:
    """kind -> apiVersion of what a release rendered."""
    return {doc["kind"]: doc["apiVersion"] for doc in yaml.safe_load_all(manifest) if doc}


# --- standalone ----------------------------------------------------------------------------------


def test_standalone_release_runs_counts_and_leaves_nothing_behind(kube: Kube, image: tuple[str, str]) -> None:
    ns, release = "standalone", "t"
    fullname = f"{release}-letta-exporter"
    kube.kubectl("create", "namespace", ns)
    kube.apply(simulator_pod("letta-sim", ns, image, "--rate", "5", "--seed", "5"))
    sim_ip = kube.ready_pod(ns, "app=letta-sim")["status"]["podIP"]

    notes = kube.helm(
        "install", release, CHART, "-n", ns, *image_values(image),
        "--set", f"letta.baseUrl=http://{sim_ip}:{SIM_PORT}", "--set", "config.pollInterval=1",
        "--set", "podDisruptionBudget.enabled=true", "--set", "podMonitor.enabled=true",
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    assert f"port-forward deploy/{fullname} {METRICS_PORT}:http-metrics" in notes
    assert "not published" not in notes  # the hint to build the image is for the placeholder only
    # The API server accepted every kind the chart renders, at the versions it serves.
    rendered = kinds_in_manifest(kube.helm("get", "manifest", release, "-n", ns))
    assert rendered["PodDisruptionBudget"] == "policy/v1beta1"  # 1.20 has no policy/v1
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert rendered[kind] == "monitoring.coreos.com/v1"
        assert kube.get(kind.lower(), "-n", ns, "-l", f"app.kubernetes.io/instance={release}")["items"], kind

    pod = kube.ready_pod(ns, f"app.kubernetes.io/instance={release}")
    pod_ip = pod["status"]["podIP"]
    endpoints = kube.get("endpoints", fullname, "-n", ns)
    assert [a["ip"] for s in endpoints["subsets"] for a in s["addresses"]] == [pod_ip]
    wait_for(lambda: runs_counted(metrics(pod_ip)) > 0, 60, "runs counted (pod IP)")

    # NOTES' way from a laptop: kubectl port-forward.
    local = free_port()
    forward = subprocess.Popen(
        ["kubectl", "-n", ns, "port-forward", f"deploy/{fullname}", f"{local}:http-metrics"],
        env=kube.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: runs_counted(metrics("127.0.0.1", local)) > 0, 30, "runs counted (port-forward)")
    finally:
        forward.terminate()
        forward.wait(timeout=10)

    # Upgrade: a changed setting rolls the pod; an object no longer rendered is deleted.
    kube.helm("upgrade", release, CHART, "-n", ns, "--reuse-values", "--set", "podMonitor.enabled=false",
              "--set", "config.pollInterval=2", "--wait", "--timeout", "180s")  # fmt: skip
    assert not kube.get("podmonitors", "-n", ns)["items"]
    selector, before = f"app.kubernetes.io/instance={release}", pod["metadata"]["name"]
    wait_for(lambda: kube.ready_pod(ns, selector)["metadata"]["name"] != before, 120, "the upgraded pod")
    pod = kube.ready_pod(ns, selector)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["LETTA_EXPORTER_POLL_INTERVAL"] == "2"
    wait_for(lambda: runs_counted(metrics(pod["status"]["podIP"])) > 0, 60, "runs counted after the upgrade")

    kube.helm("uninstall", release, "-n", ns, "--wait")
    kube.assert_nothing_left(release)
    kube.kubectl("delete", "namespace", ns, "--wait=false")


# --- sidecar -------------------------------------------------------------------------------------


def test_sidecar_metrics_equal_the_simulators_ground_truth(
    kube: Kube, image: tuple[str, str], tmp_path: Path
) -> None:
    ns, release, runs = "letta", "letta", 60
    chart = tmp_path / "letta-server"
    shutil.copytree(PARENT_CHART, chart)
    shutil.copytree(CHART, chart / "charts" / "letta-exporter")
    values = {
        "image": f"{image[0]}:{image[1]}",
        "imagePullPolicy": "Never",
        "command": ["python"],
        # A fixed workload: `runs` runs at about 10/s, then none.
        "args": simulator_args("--rate", "10", "--max-runs", str(runs), "--seed", "12"),
        "letta-exporter": {
            "mode": "sidecar",
            "image": {"repository": image[0], "tag": image[1], "pullPolicy": "Never"},
            "letta": {"baseUrl": f"http://localhost:{SIM_PORT}"},
            # Runs made before the exporter's first poll count too.
            "config": {"pollInterval": 1, "backfill": "1h", "maxRequestsPerSecond": 0},
            "podMonitor": {"enabled": True},
            # Asked for, but a 1.20 server has no native sidecars: a regular container it is.
            "sidecar": {"native": True, "podSelector": {"app.kubernetes.io/name": "letta-server"}},
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    kube.helm("install", release, chart, "-n", ns, "--create-namespace", "-f", values_file,
              "--wait", "--timeout", "180s")  # fmt: skip

    pod = kube.ready_pod(ns, "app.kubernetes.io/name=letta-server")
    spec = pod["spec"]
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["letta", "letta-exporter"]
    assert kube.get("podmonitors", "-n", ns)["items"][0]["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "letta-server"
    }
    ip = pod["status"]["podIP"]

    def truth_done() -> dict[str, Any] | None:
        summary = httpx.get(f"http://{ip}:{SIM_PORT}/_simulator/truth", timeout=5).json()
        return summary if summary["done"] else None

    truth = wait_for(truth_done, 60, "the simulator's fixed workload to finish")
    assert truth["usage"]["runs"] == runs
    wait_for(lambda: runs_counted(metrics(ip)) >= runs, 120, "the sidecar to count every run")
    time.sleep(3)  # a few more polls: a double count would show now
    samples = metrics(ip)

    # The run's stop reason, else the one its steps give (docs/servers.md).
    expected_runs: Counter[tuple[str, str]] = Counter()
    for o in truth["by_outcome_and_steps"]:
        expected_runs[(o["status"], enum_label(o["stop_reason"] or o["steps_stop_reason"]))] += o["runs"]
    assert select(samples, "letta_runs_total", ("status", "stop_reason")) == expected_runs
    usage = truth["usage"]
    assert sum(select(samples, "letta_run_steps_count", ()).values()) == runs
    assert sum(select(samples, "letta_run_steps_sum", ()).values()) == usage["steps"]
    assert sum(select(samples, "letta_run_tool_calls_total", ()).values()) == usage["tool_calls"]
    tokens = select(samples, "letta_run_tokens_total", ("type",))
    for kind in ("prompt", "completion", "cached", "cache_read", "cache_creation", "reasoning"):
        assert tokens.get((kind,), 0) == usage[f"{kind}_tokens"], kind
    assert select(samples, "letta_active_runs", ("status",)) == {}

    kube.helm("uninstall", release, "-n", ns, "--wait")
    kube.assert_nothing_left(release)
    kube.kubectl("delete", "namespace", ns, "--wait=false")


# --- install matrix ------------------------------------------------------------------------------


def test_every_ci_values_file_installs(kube: Kube, image: tuple[str, str]) -> None:
    """Server-side acceptance of each values file's objects, all releases side by side (their pods
    are not waited for: most need Secrets or a storage class this cluster does not have)."""
    releases = {values.name.removesuffix("-values.yaml"): values for values in CI_VALUES}
    kube.kubectl("create", "namespace", "monitoring")  # where ci/monitoring-values.yaml puts dashboards
    for name, values in releases.items():
        kube.helm("install", f"ci-{name}", CHART, "-n", f"ci-{name}", "--create-namespace", "-f", values,
                  *image_values(image), "--set", "image.digest=")  # fmt: skip
    for name in releases:
        status = json.loads(kube.helm("status", f"ci-{name}", "-n", f"ci-{name}", "-o", "json"))
        assert status["info"]["status"] == "deployed", name
        kube.helm("uninstall", f"ci-{name}", "-n", f"ci-{name}")
    # The state PVC stays on purpose (helm.sh/resource-policy: keep): the counts outlive the release.
    claim = "ci-hardening-max-letta-exporter-state"
    kube.assert_nothing_left(*(f"ci-{name}" for name in releases), kept=(f"persistentvolumeclaim/{claim}",))
    pvc = kube.get("pvc", claim, "-n", "ci-hardening-max")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    kube.kubectl("delete", "namespace", "monitoring", *(f"ci-{name}" for name in releases), "--wait=false")


def test_same_named_releases_in_two_namespaces(kube: Kube, image: tuple[str, str]) -> None:
    release, dashboards = "dup", "grafana"
    kube.kubectl("create", "namespace", dashboards)
    for ns in ("team-a", "team-b"):
        kube.helm("install", release, CHART, "-n", ns, "--create-namespace", *image_values(image),
                  "--set", f"dashboards.namespace={dashboards}",
                  "--set", "letta.baseUrl=http://127.0.0.1:9")  # fmt: skip
    maps = kube.get("configmaps", "-n", dashboards, "-l", f"app.kubernetes.io/instance={release}")["items"]
    owners = sorted(m["metadata"]["annotations"]["meta.helm.sh/release-namespace"] for m in maps)
    per_release = len(list((CHART / "dashboards").glob("*.json")))
    assert owners == ["team-a"] * per_release + ["team-b"] * per_release
    for ns in ("team-a", "team-b"):
        # Running before it goes (never Ready: no Letta answers). Once a pod here took over 90 s to
        # go; deleted while the kubelet was still setting up its sandbox is the likeliest reason.
        kube.running_pod(ns, f"app.kubernetes.io/instance={release}")
        kube.helm("uninstall", release, "-n", ns, "--wait")
    kube.assert_nothing_left(release)
    for ns in ("team-a", "team-b", dashboards):
        kube.kubectl("delete", "namespace", ns, "--wait=false")
