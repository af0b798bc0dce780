"""HTTP front of the simulator: routing, Letta's parameter validation, auth, faults, request log.

``App.handle`` turns a request into a ``Response`` without touching sockets, so the routing logic
stays testable on its own; ``Server`` is a plain stdlib ThreadingHTTPServer around it.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from exporter.simulator import routes_011, shapes, shapes_011
from exporter.simulator.faults import BAD_GATEWAY_HTML, FaultPicker, Faults, truncate
from exporter.simulator.simconfig import SimConfig
from exporter.simulator.wire import Params, Response, json_response
from exporter.simulator.world import RunFilter, UnknownCursor, World

log = logging.getLogger(__name__)

REQUEST_LOG_SIZE = 200_000


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str  # raw query string, as sent
    headers: dict[str, str]  # names lower-cased


class App:
    """Everything the handler threads share: the world, the faults, the request log."""

    def __init__(self, world: World, config: SimConfig, faults: Faults) -> None:
        self.world = world
        self.config = config
        self.picker = FaultPicker(faults, config.seed)
        self._log: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
        self._log_lock = threading.Lock()

    def record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(record)

    def requests(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._log)

    # -- request -> response ---------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: dict[str, str]) -> Response:
        if path.startswith("/v1/") and (wait := self.picker.over_limit()) is not None:
            return json_response(429, {"detail": "Rate limit exceeded"}, (("retry-after", str(wait)),))
        fault = self.picker.pick() if path.startswith("/v1/") else None
        faults = self.picker.faults
        if fault == "429":
            retry_after = f"{faults.retry_after:g}"
            return json_response(429, {"detail": "Rate limit exceeded"}, (("retry-after", retry_after),))
        if fault == "500":
            return json_response(500, {"detail": "An unknown error occurred"})
        if fault == "502":
            return Response(502, BAD_GATEWAY_HTML, "text/html")
        if fault == "slow":
            time.sleep(faults.slow_seconds)
        try:
            response = self._answer(method, path, query, headers)
        except Exception:
            log.exception("simulator failed on %s %s", method, path)
            response = json_response(500, {"detail": "Internal Server Error"})
        if fault == "malformed":
            return Response(200, truncate(response.body))
        return response

    def _authorised(self, headers: dict[str, str]) -> bool:
        key = self.config.api_key
        if not key:
            return True
        return hmac.compare_digest(headers.get("authorization", "").encode(), f"Bearer {key}".encode())

    def _answer(self, method: str, path: str, query: str, headers: dict[str, str]) -> Response:
        if not self._authorised(headers):
            return json_response(401, {"detail": "Unauthorized"}, (("www-authenticate", "Bearer"),))
        if method != "GET":
            return json_response(405, {"detail": "Method Not Allowed"}, (("allow", "GET"),))
        parts = [part for part in path.split("/") if part]
        params = Params(query)
        match parts:
            case ["v1", "health"]:
                return json_response(200, shapes_011.HEALTH if self.config.jobs_era else shapes.HEALTH)
            case ["v1", "steps"]:
                return self.list_steps(params)
            case ["v1", "runs", *rest]:
                runs = routes_011.runs if self.config.jobs_era else self._runs
                if (response := runs(self.world, rest, params)) is not None:
                    return response
            case ["v1", "agents", agent_id]:
                return self._found(self.world.agent(agent_id), "Agent", agent_id)
            case ["v1", "tools", tool_id]:
                return self._found(self.world.tool(tool_id), "Tool", tool_id)
            case ["_simulator", "truth"]:
                return json_response(200, self.world.truth_summary())
        # FastAPI's answer for a path no route matches.
        return json_response(404, {"detail": "Not Found"})

    def _runs(self, world: World, rest: list[str], params: Params) -> Response | None:
        """The runs routes of the spec, Letta Cloud and Letta 0.16.8; None where the server has no
        route (Letta Cloud's reference lacks /active, /metrics and /trace)."""
        extras = self.config.run_extras
        match rest:
            case []:
                return self.list_runs(params)
            case ["active"]:
                return self.list_active(params) if extras else None
            case [run_id]:
                return self._found(world.get_run(run_id), "Run", run_id)
            case [run_id, "usage"]:
                return self._found(world.usage(run_id), "Run", run_id)
            case [run_id, "metrics"] if extras:
                return self._found(world.metrics(run_id), "RunMetrics", run_id)
            case [run_id, "steps"]:
                return self.steps(run_id, params)
            case [run_id, "trace"] if extras:
                return self.trace(run_id, params)
        return None

    @staticmethod
    def _found(body: Any, kind: str, ident: str) -> Response:
        if body is None:
            return json_response(404, shapes.not_found(kind, ident))
        return json_response(200, body)

    def list_runs(self, params: Params) -> Response:
        # Validation runs in FastAPI's parameter order, before the handler's own checks (the 400).
        background = params.boolean("background", None)
        stop_reason = params.stop_reason()
        limit = params.integer("limit", 100, ge=1, le=1000)
        descending = params.order()
        active = params.boolean("active", False)
        if invalid := params.invalid():
            return invalid
        statuses = params.all("statuses")
        for status in statuses or ():
            if status not in shapes.RUN_STATUSES:
                return json_response(400, {"detail": f"'{status}' is not a valid RunStatus"})
        wanted = frozenset(statuses) if statuses else None
        if active:
            wanted = frozenset({"created", "running"})
        where = RunFilter(
            statuses=wanted,
            agent_id=params.last("agent_id"),
            background=background,
            stop_reason=stop_reason,
            conversation_id=params.last("conversation_id"),
        )
        page = self.world.list_runs(
            descending=descending,
            limit=limit,
            **params.cursors(),
            where=where,
        )
        return json_response(200, page)

    def list_active(self, params: Params) -> Response:
        background = params.boolean("background", None)
        if invalid := params.invalid():
            return invalid
        where = RunFilter(agent_id=params.last("agent_id"), background=background)
        return json_response(200, self.world.list_active(where))

    def steps(self, run_id: str, params: Params) -> Response:
        limit = params.integer("limit", 100)
        descending = params.order()
        if invalid := params.invalid():
            return invalid
        body = self.world.steps(
            run_id,
            descending=descending,
            limit=limit,
            **params.cursors(),
        )
        return self._found(body, "Run", run_id)

    def list_steps(self, params: Params) -> Response:
        """``GET /v1/steps/``, the global steps list."""
        generation = self.config.generation
        limit = params.integer("limit", 50)
        # Letta 0.11 takes order as a free string, and its server listed newest first whatever it said.
        descending = True if self.config.jobs_era else params.order()
        validated = generation in ("spec", "cloud")
        dates = [params.moment("start_date"), params.moment("end_date")] if validated else []
        if invalid := params.invalid():
            return invalid
        if not validated:
            # The self-hosted routers take the dates as strings and parse them in the handler.
            parsed = params.parsed_moments("start_date", "end_date")
            if isinstance(parsed, Response):
                return parsed
            dates = parsed
        if generation == "letta-0.16.8":
            return json_response(400, shapes.steps_list_bug(descending))
        start_us, end_us = dates
        if start_us is not None and end_us is not None and start_us > end_us:
            return json_response(400, {"detail": "start_date must be earlier than or equal to end_date"})
        try:
            page = self.world.list_steps(
                descending=descending,
                limit=limit,
                **params.cursors(),
                start_us=start_us,
                end_us=end_us,
                agent_id=params.last("agent_id"),
                model=params.last("model"),
            )
        except UnknownCursor as exc:
            return json_response(404, exc.body)
        return json_response(200, page)

    def trace(self, run_id: str, params: Params) -> Response:
        limit = params.integer("limit", 1000, ge=1, le=5000)
        if invalid := params.invalid():
            return invalid
        if self.config.trace_mode == "501":
            # No ClickHouse: 501 for every run, unknown ones included, as the real server does.
            return json_response(501, {"detail": shapes.TRACE_501_DETAIL})
        return self._found(self.world.trace(run_id, limit), "Run", run_id)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn; every response carries Content-Length
    # Headers and body go out in separate writes; without this, Nagle + delayed ACK adds ~40 ms.
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def version_string(self) -> str:
        return "uvicorn"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a benchmark sends thousands of requests a second; the request log is in App

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)  # drain, so the kept-alive connection stays in sync
        headers = {name.lower(): value for name, value in self.headers.items()}
        split = urlsplit(self.path)
        app = self.server.app
        app.record(RequestRecord(self.command, split.path, split.query, headers))
        response = app.handle(self.command, split.path, split.query, headers)
        self.send_response(response.status)
        self.send_header("content-type", response.content_type)
        self.send_header("content-length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # the default 5 makes bursts of new connections wait on SYN retries

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply (a timed-out exporter, a killed process) is normal here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Kept-alive connections outlive shutdown(); close them so a stopped simulator stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
