"""The container image: static checks of the Dockerfile (fast tier); hadolint on it, and, behind the
`docker` marker, a real `docker build` and a real container in demo mode on the host network
(integration tier: a missing hadolint or Docker engine fails the test).

The Docker tests need a Docker engine and the base image the Dockerfile pins; here that is a
stand-in built by .ci/install-docker.sh, since registry images cannot be pulled.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from exporter import __version__
from tests import support
from tests.support import ROOT as REPO
from tests.support import free_port, require_tool

DOCKERFILE = REPO / "Dockerfile"
USER = "10001:10001"
T = TypeVar("T")


# --- static checks (no Docker needed) ------------------------------------------------------------


@pytest.mark.integration
def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint", ".ci/install-helm.sh")
    proc = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


@pytest.mark.integration
def test_hadolint_is_not_a_no_op(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint", ".ci/install-helm.sh")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install httpx\n")
    proc = subprocess.run([str(hadolint), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def base_image() -> str:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "Dockerfile: ARG BASE_IMAGE=<image> not found"
    return match.group(1)


def test_dockerfile_pins_its_base_and_ci_builds_that_stand_in() -> None:
    image = base_image()
    assert re.fullmatch(r"python:3\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    script = (REPO / ".ci" / "install-docker.sh").read_text()
    assert f'BASE_IMAGE="${{LETTA_EXPORTER_BASE_IMAGE:-{image}}}"' in script
    text = DOCKERFILE.read_text()
    assert text.count("FROM ${BASE_IMAGE}") == 2  # multi-stage, both on the pinned base
    assert f"USER {USER}" in text
    assert 'ENTRYPOINT ["letta-exporter"]' in text


def test_dockerignore_admits_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!exporter/"} <= set(lines)


# --- the real image ------------------------------------------------------------------------------


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
        )
    return proc


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    require_tool("docker", ".ci/install-docker.sh")
    if docker("info", check=False).returncode != 0:
        pytest.fail("no Docker engine answers: run .ci/install-docker.sh")
    if docker("image", "inspect", base_image(), check=False).returncode != 0:
        pytest.fail(f"base image {base_image()} missing: run .ci/install-docker.sh")
    tag = f"letta-exporter:pytest-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    # --network host: this machine's dockerd runs with --bridge=none, so builds reach PyPI that way.
    docker("build", "--network", "host", "--pull=false", "-t", tag, str(REPO), timeout=480)
    print(f"docker build took {time.monotonic() - started:.1f}s")
    try:
        yield tag
    finally:
        docker("image", "rm", "--force", tag, check=False)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of containers a test started; all are removed afterwards, whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "--force", name, check=False)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """A container's endpoint can refuse connections while it starts: that counts as not yet."""
    return support.wait_for(predicate, timeout, interval=0.5, what=what, ignore=(OSError, httpx.HTTPError))


@pytest.mark.integration
@pytest.mark.docker
def test_image_metadata(image: str) -> None:
    config = json.loads(docker("image", "inspect", image, "--format", "{{json .Config}}").stdout)
    assert config["User"] == USER
    assert config["Entrypoint"] == ["letta-exporter"]
    assert "8284/tcp" in config["ExposedPorts"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Labels"]["org.opencontainers.image.title"] == "letta-exporter"
    assert config["Labels"]["org.opencontainers.image.version"] == __version__
    proc = docker("run", "--rm", "--network", "none", image, "--version")
    assert proc.stdout.strip() == f"letta-exporter {__version__}"


@pytest.mark.integration
@pytest.mark.docker
def test_image_carries_no_build_tools(image: str) -> None:
    script = (
        "for tool in gcc cc g++ make ld; do command -v $tool && exit 1; done; "
        "test ! -e /opt/letta-exporter/bin/pip && test ! -d /src && test ! -d /dist"
    )
    proc = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script, check=False)
    assert proc.returncode == 0, f"build tools or build leftovers in the image: {proc.stdout}{proc.stderr}"


@pytest.mark.integration
@pytest.mark.docker
def test_missing_key_stops_with_one_line_and_exit_code_2(image: str) -> None:
    proc = docker("run", "--rm", "--network", "none", image, check=False)
    assert proc.returncode == 2
    assert "LETTA_API_KEY" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.integration
@pytest.mark.docker
def test_demo_container_serves_metrics_as_non_root_on_a_read_only_root(
    image: str, containers: list[str]
) -> None:
    port = free_port()
    name = f"letta-exporter-pytest-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    docker(
        "run", "--detach", "--name", name, "--network", "host",
        # As locked down as the Helm chart runs it.
        "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/var/lib/letta-exporter:uid=10001,gid=10001,mode=0700",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--env", f"LETTA_EXPORTER_PORT={port}",
        "--env", "LETTA_EXPORTER_STATE_FILE=/var/lib/letta-exporter/state.json",
        "--health-interval", "2s", "--health-start-period", "5s",
        image, "demo", "--listen-address", "127.0.0.1",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        status, _ = wait_for(lambda: get(f"{base}/healthz"), 60, "/healthz")
        assert status == 200
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 60, "/readyz to turn ready")

        def metrics_with_runs() -> str | None:
            status, text = get(f"{base}/metrics")
            if (
                status == 200
                and re.search(r"^letta_exporter_up 1\.0$", text, re.M)
                and re.search(r"^letta_runs_total\{.*\} [1-9]", text, re.M)
            ):
                return text
            return None

        text = wait_for(metrics_with_runs, 60, "/metrics with counted runs")
        assert f'letta_exporter_build_info{{version="{__version__}"}} 1.0' in text
        assert get(f"{base}/")[0] == 200
        # Runs as the image's numeric non-root user, and the state file lands on its volume.
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        assert docker("exec", name, "id", "-g").stdout.strip() == "10001"
        uid_line = next(
            line
            for line in docker("exec", name, "cat", "/proc/1/status").stdout.splitlines()
            if line.startswith("Uid:")
        )
        assert uid_line.split()[1:] == ["10001"] * 4
        wait_for(
            lambda: (
                docker(
                    "exec", name, "test", "-s", "/var/lib/letta-exporter/state.json", check=False
                ).returncode
                == 0
            ),
            30,
            "the state file",
        )
        # The image's HEALTHCHECK passes.
        wait_for(
            lambda: (
                docker("inspect", name, "--format", "{{.State.Health.Status}}").stdout.strip() == "healthy"
            ),
            30,
            "HEALTHCHECK to report healthy",
        )
        # SIGTERM to PID 1 stops it promptly and cleanly.
        started = time.monotonic()
        docker("stop", "--time", "20", name, timeout=40)
        assert time.monotonic() - started < 15
        assert docker("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
    except AssertionError:
        print(docker("logs", "--tail", "50", name, check=False).stderr)
        raise


@pytest.mark.integration
@pytest.mark.docker
def test_tls_and_basic_auth_from_a_mounted_web_config(
    image: str, containers: list[str], tmp_path: Path
) -> None:
    """As the Helm chart's web.configSecret mounts it: the HEALTHCHECK follows TLS, /metrics asks
    for credentials."""
    import shutil
    import ssl

    import bcrypt

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    web = tmp_path / "web"
    web.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(web / "tls.key"), "-out", str(web / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(rounds=4)).decode()
    (web / "web-config.yml").write_text(
        f"tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    for path in [tmp_path, web, *web.iterdir()]:  # readable by the container's user 10001
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    name = f"letta-exporter-pytest-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    docker(
        "run", "--detach", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{web}:/etc/letta-exporter/web:ro",
        "--env", "LETTA_EXPORTER_WEB_CONFIG_FILE=/etc/letta-exporter/web/web-config.yml",
        "--env", f"LETTA_EXPORTER_PORT={port}",
        "--health-interval", "2s", "--health-start-period", "5s",
        image, "demo", "--listen-address", "127.0.0.1",
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(web / "tls.crt"))
    base = f"https://127.0.0.1:{port}"

    def fetch(path: str, auth: bool = False) -> int:
        request = urllib.request.Request(base + path)
        if auth:
            token = base64.b64encode(b"prometheus:scrape-secret").decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=trust) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        wait_for(lambda: fetch("/healthz") == 200, 60, "/healthz over HTTPS")
        assert fetch("/metrics") == 401
        assert fetch("/metrics", auth=True) == 200
        wait_for(
            lambda: (
                docker("inspect", name, "--format", "{{.State.Health.Status}}").stdout.strip() == "healthy"
            ),
            30,
            "HEALTHCHECK over HTTPS to report healthy",
        )
    except AssertionError:
        print(docker("logs", "--tail", "50", name, check=False).stderr)
        raise
