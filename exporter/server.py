"""The HTTP surface (docs/configuration.md, "HTTP endpoints"): /metrics, /healthz, /readyz and a landing page.

Served from its own threads, so a scrape is answered from memory however slow a poll is.
"""

from __future__ import annotations

import html
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporter import __version__
from exporter.config import ConfigError
from exporter.exposition import Exposition
from exporter.webconfig import BasicAuth


@dataclass(frozen=True)
class Status:
    """What the landing page says about the exporter, besides its version."""

    letta_url: str
    last_success: Callable[[], float | None]  # Unix time of the last poll that reached Letta


def public_url(url: str) -> str:
    """``url`` without credentials, query or fragment: safe to show to anyone who can see /."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.split("#")[0].split("?")[0].partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def landing_page(ready: bool, status: Status | None) -> bytes:
    rows = [("Ready", "yes" if ready else "no: waiting for the first successful poll")]
    if status is not None:
        last = status.last_success()
        last_text = "never"
        if last:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last))
            last_text = f"{stamp} ({max(0.0, time.time() - last):.0f} s ago)"
        rows = [("Letta", public_url(status.letta_url)), *rows, ("Last successful poll", last_text)]
    rows.append(("Version", __version__))
    table = "\n".join(f"<tr><th>{name}</th><td>{html.escape(value)}</td></tr>" for name, value in rows)
    return f"""<!doctype html>
<html><head><title>letta-exporter</title></head>
<body><h1>letta-exporter {__version__}</h1>
<p>Prometheus metrics for Letta agent runs.</p>
<table>
{table}
</table>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
""".encode()


StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # a client trickling its request cannot hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _text(start_response: StartResponse, status: str, body: bytes, *headers: tuple[str, str]) -> list[bytes]:
    start_response(status, [*headers, ("Content-Type", "text/plain")])
    return [body]


# Probes stay open so kubelet needs no credentials; they reveal nothing but liveness.
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})


def make_app(
    exposition: Exposition,
    is_ready: Callable[[], bool],
    auth: BasicAuth | None = None,
    status: Status | None = None,
) -> Callable[..., Iterable[bytes]]:
    def metrics_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rendered = exposition.current()
        headers = [("Content-Type", exposition.content_type), ("Vary", "Accept-Encoding")]
        body: Iterable[bytes]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            packed = rendered.gzipped
            body, length = [packed], len(packed)
            headers.append(("Content-Encoding", "gzip"))
        else:
            body, length = rendered.chunks(), rendered.length
        headers.append(("Content-Length", str(length)))
        start_response("200 OK", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else body

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        reply = partial(_text, start_response)
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return reply("405 Method Not Allowed", b"method not allowed\n", ("Allow", "GET, HEAD"))
        if (
            auth is not None
            and path not in UNAUTHENTICATED_PATHS
            and not auth.check(environ.get("HTTP_AUTHORIZATION"))
        ):
            challenge = ("WWW-Authenticate", 'Basic realm="letta-exporter"')
            return reply("401 Unauthorized", b"unauthorized\n", challenge)
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            return reply("200 OK", b"ok\n")
        if path == "/readyz":
            if is_ready():
                return reply("200 OK", b"ready\n")
            return reply("503 Service Unavailable", b"waiting for the first successful poll\n")
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing_page(is_ready(), status)]
        return reply("404 Not Found", b"not found\n")

    return app


class HttpServer:
    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        try:
            self._server = make_server(
                host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        if ssl_context is not None:
            # Each accepted connection is wrapped as this socket is, so its handshake happens on first
            # read, in the request's own thread: a client that never finishes it cannot stall accept().
            self._server.socket = ssl_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        # serve_forever checks for shutdown this often: stopping waits for it, wakeups cost little.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
