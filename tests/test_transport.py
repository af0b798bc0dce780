"""The client's transport (exporter/letta/transport.py) over real sockets on loopback: TLS with the
environment's CA file, a proxy named by the environment, and a server that closes idle keep-alive
connections."""

from __future__ import annotations

import asyncio
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaTransportError
from exporter.letta.transport import AsyncioTransport, environment_proxy, letta_transport
from tests.hostile_server import HostileLetta, run_json
from tests.test_client import first_page
from tests.test_web_security import make_cert


class Requests:
    """A RequestObserver that keeps the codes it is told of."""

    def __init__(self) -> None:
        self.codes: list[str] = []

    def observe_request(self, endpoint: str, code: str, seconds: float) -> None:
        self.codes.append(code)

    def observe_malformed(self, endpoint: str) -> None:
        pass

    def observe_cursor(self, *args: str) -> None:
        pass


def test_https_is_verified_against_the_ca_file_the_environment_names(tmp_path, monkeypatch) -> None:
    cert, key = make_cert(tmp_path)
    server = HostileLetta(runs=[run_json("run-tls")])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server._server.socket = context.wrap_socket(server._server.socket, server_side=True)
    server.start()
    url = server.base_url.replace("http://", "https://")
    try:
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        runs = asyncio.run(_list_runs(url))
        assert [run.id for run in runs] == ["run-tls"]

        monkeypatch.delenv("SSL_CERT_FILE")  # the public CAs do not vouch for this certificate
        with pytest.raises(LettaTransportError, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(_list_runs(url, max_retries=0))
    finally:
        server.stop()


def test_a_proxy_named_by_the_environment_carries_the_requests(monkeypatch) -> None:
    proxy = HostileLetta(runs=[run_json("run-proxied")]).start()  # answers absolute-form requests too
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        runs = asyncio.run(_list_runs("http://letta.invalid"))  # a name no resolver knows
        assert [run.id for run in runs] == ["run-proxied"]
        assert proxy.requests == ["/v1/runs/"]
    finally:
        proxy.stop()


def test_no_proxy_and_an_unset_environment_mean_a_direct_connection(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    cloud = httpx.URL("https://api.letta.com")
    assert environment_proxy(cloud) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert environment_proxy(cloud) == "http://proxy.internal:3128"
    assert environment_proxy(httpx.URL("http://localhost:8283")) is None  # HTTP_PROXY unset
    monkeypatch.setenv("NO_PROXY", "letta.com")
    assert environment_proxy(cloud) is None
    assert isinstance(letta_transport(cloud, httpx.Limits()), AsyncioTransport)


class _ClosingHandler(BaseHTTPRequestHandler):
    """Answers HTTP/1.1 without "Connection: close", then closes anyway, as a server whose idle
    keep-alive timeout is shorter than the client's does."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_pooled_connection_the_server_closed_is_not_reused() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClosingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    observed = Requests()

    async def three_polls() -> None:
        client = LettaClient(f"http://127.0.0.1:{server.server_address[1]}", observer=observed)
        try:
            for _ in range(3):
                assert await first_page(client, 10) == []
                await asyncio.sleep(0.1)  # the server's close reaches the idle connection
        finally:
            await client.aclose()

    try:
        asyncio.run(three_polls())
    finally:
        server.shutdown()
        server.server_close()
    # Each poll on a fresh connection: no request was sent into a closed one (and retried).
    assert observed.codes == ["200", "200", "200"]


async def _list_runs(url: str, max_retries: int = 3) -> list[Any]:
    client = LettaClient(url, max_retries=max_retries, backoff_base=0.01)
    try:
        return await first_page(client, 10)
    finally:
        await client.aclose()
