"""A Letta-shaped server that answers with hostile or broken bodies, for the bad-input suite.

Real HTTP on loopback: the exporter's client, parser and poller meet the bytes exactly as they would
from a misbehaving server or proxy. Each route is a function of the request returning the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterable[bytes] = b"[]"
    content_type: str = "application/json"
    delay_between_chunks: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


Route = Callable[[str, dict[str, list[str]]], Reply]


def run_json(run_id: str, *, status: str = "completed", **fields: Any) -> dict[str, Any]:
    now = time.time()
    body = {
        "id": run_id,
        "status": status,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 1)) + ".000000Z",
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".000000",
        "agent_id": "agent-00000000-0000-4000-8000-000000000001",
        "stop_reason": "end_turn",
        "ttft_ns": None,
        "total_duration_ns": 1_000_000_000,
    }
    body.update(fields)
    return body


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(value).encode())


def gzip_bomb(decoded_mib: int = 1024) -> bytes:
    """``decoded_mib`` MiB of JSON-ish spaces, gzipped about 1,000 to 1 (1 GiB: about 1 MB, built in
    a few seconds)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    parts = [deflate.compress(block) for _ in range(decoded_mib)]
    parts.append(deflate.flush())
    return b"".join(parts)


def bomb_reply(bomb: bytes, piece: int = 0, delay: float = 0.0) -> Reply:
    """The bomb as a reply; if ``piece`` is given, sent in writes of that many bytes ``delay``
    seconds apart, as a slow link delivers it: a client then decodes it a little at a time, in turns
    with its other replies, rather than in one go."""
    body = [bomb[at : at + piece] for at in range(0, len(bomb), piece)] if piece else bomb
    return Reply(body=body, headers=(("Content-Encoding", "gzip"),), delay_between_chunks=delay)


@dataclass
class HostileLetta:
    """Serves ``runs`` (list, active list, per-run enrichment); ``list_route`` swaps in a hostile list,
    ``route`` a hostile anything."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    list_route: Route | None = None  # replaces the run list (not the active list) when set
    requests: list[str] = field(default_factory=list)
    # Asked first for the paths ending so (e.g. "/metrics"; "" for every path): a reply replaces the
    # usual one, None leaves it.
    overrides: dict[str, Callable[[str, dict[str, list[str]]], Reply | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                # A client that refused a reply mid-body drops its connection: expected here.
                with contextlib.suppress(ConnectionResetError):
                    super().handle()

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                hostile.requests.append(parts.path)
                reply = hostile.answer(parts.path, parse_qs(parts.query))
                chunks = [reply.body] if isinstance(reply.body, bytes) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    if isinstance(reply.body, bytes):
                        self.send_header("Content-Length", str(len(reply.body)))
                    else:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if reply.delay_between_chunks:
                            time.sleep(reply.delay_between_chunks)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if not isinstance(reply.body, bytes):
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HostileLetta:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, path: str, query: dict[str, list[str]]) -> Reply:
        for suffix, route in self.overrides.items():
            if path.endswith(suffix) and (reply := route(path, query)) is not None:
                return reply
        if path.rstrip("/") == "/v1/runs":
            if query.get("active") == ["true"]:
                active = [
                    r for r in self.runs if isinstance(r, dict) and r.get("status") in ("created", "running")
                ]
                return json_reply(active)
            if self.list_route is not None:
                return self.list_route(path, query)
            if query.get("before") or query.get("after"):
                return json_reply([])  # one page holds everything here
            return json_reply(self.runs)
        if path.endswith("/metrics"):
            return json_reply({"run_ns": 1_000_000_000, "num_steps": 1, "tools_used": None})
        if path.endswith("/steps"):
            step = {"id": "step-1", "model": "gpt-4o-mini", "prompt_tokens": 10, "completion_tokens": 2}
            return json_reply([{**step, "status": "success", "stop_reason": "end_turn"}])
        if path.startswith("/v1/agents/"):
            return json_reply({"id": path.rsplit("/", 1)[-1], "name": "agent"})
        if path.startswith("/v1/runs/"):
            run_id = path.split("/")[3]
            match = [r for r in self.runs if isinstance(r, dict) and r.get("id") == run_id]
            return json_reply(match[0]) if match else json_reply({"detail": "Run not found"}, 404)
        return json_reply({"detail": "Not Found"}, 404)


def poll_with(server: HostileLetta, exporter: Any, runs: list[dict[str, Any]], polls: int) -> None:
    """A baseline poll of the empty server, then ``runs`` served and ``polls`` polls, each followed by
    the enrichment of what it found (and a moment for looks on a delay); the server is stopped after."""

    async def scenario() -> None:
        await exporter.poller.tick()
        server.runs = runs
        for _ in range(polls):
            await exporter.poller.tick()
            await exporter.enricher.join()
            await asyncio.sleep(0.1)
        await exporter.client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
