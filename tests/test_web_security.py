"""TLS and basic auth on /metrics, checked with a real HTTPS client against the real process."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import bcrypt
import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.config import ConfigError
from exporter.exposition import Exposition
from exporter.server import HttpServer, make_app
from exporter.webconfig import BasicAuth, WebConfig, load_web_config
from tests.support import ExporterProcess
from tests.test_config import run_cli

PASSWORD = "scrape-me-4829"


def make_cert(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def write_web_config(directory: Path, *, tls: bool = True, users: bool = True) -> Path:
    lines = []
    if tls:
        make_cert(directory)
        lines += ["tls_server_config:", "  cert_file: tls.crt", "  key_file: tls.key"]
    if users:
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines += ["basic_auth_users:", f"  prometheus: '{hashed.replace('$2b$', '$2y$')}'"]
    path = directory / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_metrics_over_tls_with_basic_auth(sim_factory, tmp_path) -> None:
    sim = sim_factory()
    config = write_web_config(tmp_path)
    exporter = ExporterProcess(
        tmp_path,
        ["--poll-interval", "0.5", "--web-config-file", str(config)],
        env={"LETTA_BASE_URL": sim.base_url},
    )
    exporter.spawn()  # readiness is checked below, over HTTPS
    base = f"https://127.0.0.1:{exporter.port}"
    try:
        trust = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
        with httpx.Client(verify=trust, timeout=5) as client:
            _wait_https(client, base + "/readyz")
            assert client.get(base + "/metrics").status_code == 401
            assert client.get(base + "/metrics", auth=("prometheus", "wrong")).status_code == 401
            assert client.get(base + "/metrics", auth=("nobody", PASSWORD)).status_code == 401
            ok = client.get(base + "/metrics", auth=("prometheus", PASSWORD))
            assert ok.status_code == 200 and "letta_runs_total" in ok.text
            assert client.get(base + "/healthz").status_code == 200  # probes need no credentials
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=2)  # plain HTTP is refused
    finally:
        exporter.stop()
    assert PASSWORD not in exporter.logs()


def test_a_client_that_never_starts_tls_does_not_hold_up_the_others(tmp_path) -> None:
    cert, key = make_cert(tmp_path)
    app = make_app(Exposition(CollectorRegistry()), lambda: True)
    server = HttpServer(app, "127.0.0.1", 0, ssl_context=WebConfig(cert, key).ssl_context()).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port)):  # connects, never says hello
            trust = ssl.create_default_context(cafile=str(cert))
            response = httpx.get(f"https://127.0.0.1:{server.port}/healthz", verify=trust, timeout=5)
        assert response.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)  # plain HTTP is refused
    finally:
        server.stop()


def _wait_https(client: httpx.Client, url: str) -> None:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("exporter did not become ready over HTTPS")


def test_basic_auth_header_parsing() -> None:
    auth = BasicAuth({"u": bcrypt.hashpw(b"p", bcrypt.gensalt(rounds=4))})
    header = lambda text: "Basic " + base64.b64encode(text.encode()).decode()  # noqa: E731
    assert auth.check(header("u:p"))
    assert auth.check(header("u:p"))  # remembered
    assert not auth.check(header("u:q"))
    assert not auth.check(header("u"))
    assert not auth.check("Basic !!!not-base64")
    assert not auth.check("Bearer token")
    assert not auth.check(None)


@pytest.mark.parametrize(
    "content, message",
    [
        ("basic_auth_users:\n  u: plaintext\n", "bcrypt hash"),
        ("tls_server_config:\n  cert_file: missing.crt\n", "cert_file and key_file"),
        ("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n", "cannot load"),
        ("bogus_key: 1\n", "unknown key"),
        ("[unclosed\n", "not valid YAML"),
    ],
)
def test_bad_web_config_is_one_clear_error(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_web_config(path)
    result = run_cli("--web-config-file", str(path), env={"LETTA_BASE_URL": "http://127.0.0.1:9"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "LETTA_EXPORTER_WEB_CONFIG_FILE" in result.stderr
