"""Read-only async client for Letta's Runs API.

Only ever sends GET. Each call is retried with exponential backoff and full jitter on 429, 5xx
(except 501, which means "not supported here") and transport errors, honouring ``Retry-After``.
Every attempt is counted by endpoint and code. The API key travels only in the Authorization
header and never appears in an error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import ssl
import time
import zlib
from collections.abc import AsyncIterable, Callable
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from exporter import __version__, defaults
from exporter.letta.budget import DecodeBudget, Hold
from exporter.letta.errors import (
    LettaError,
    LettaHTTPError,
    LettaMalformedResponse,
    LettaNotFound,
    LettaNotImplemented,
    LettaTransportError,
)
from exporter.letta.models import Named, Run, RunMetrics, Step, UsageStatistics, as_utc, raw_step_run_id
from exporter.letta.paging import CursorBehaviour, CursorObserver, CursorWalk, Param
from exporter.letta.ratelimit import AdaptiveRateLimiter
from exporter.letta.transport import letta_transport

log = logging.getLogger(__name__)

USER_AGENT = f"letta-exporter/{__version__} (+https://github.com/letta-exporter/letta-exporter)"
MAX_DETAIL_CHARS = 200
MAX_PAGE = 1000  # Letta's largest page (limit=1..1000)
# Decoded bytes one reply may hold: a page of 1,000 runs is about 2 MB. Also bounds what a
# compressed reply can grow to in memory before it is refused.
MAX_BODY_BYTES = 16 * 1024 * 1024
# What the replies being read besides the eldest may hold between them (exporter/letta/budget.py):
# with MAX_BODY_BYTES, at most 24 MiB decoded at once in the whole process, bombs or not.
SHARED_BODY_BYTES = 8 * 1024 * 1024
DECODE_BUDGET = DecodeBudget(SHARED_BODY_BYTES)
INFLATE_PIECE = 256 * 1024
BACKOFF_MAX = 30.0  # seconds: the longest wait between attempts, whatever Retry-After asks
# The Runs API operations this client calls, by their operation IDs in Letta's API reference (a
# member's value is its name in lower case): the endpoint label of letta_exporter_api_requests_total
# and letta_exporter_endpoint_available, and the names the rest of the exporter knows them by.
Endpoint = StrEnum(
    "Endpoint",
    "LIST_RUNS LIST_ACTIVE_RUNS LIST_STEPS LIST_STEPS_FOR_RUN RETRIEVE_RUN RETRIEVE_USAGE_FOR_RUN "
    "RETRIEVE_METRICS_FOR_RUN RETRIEVE_TRACE_FOR_RUN RETRIEVE_AGENT RETRIEVE_TOOL",
)
ModelT = TypeVar("ModelT", bound=BaseModel)
_HTTP_ERRORS: dict[int, type[LettaHTTPError]] = {404: LettaNotFound, 501: LettaNotImplemented}


class RequestObserver(CursorObserver, Protocol):
    def observe_request(self, endpoint: str, code: str, seconds: float) -> None: ...

    def observe_malformed(self, endpoint: str) -> None: ...


class _NullObserver(RequestObserver):
    """Observes nothing: a protocol's methods, inherited, do nothing."""


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds (it is a number of seconds or an HTTP date); None if absent or unreadable."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _BadBody(Exception):
    """A reply's body refused as it streamed in; ``code`` is what the request is counted as."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Retry(Exception):
    """An attempt that failed in a way worth another (``after``: the server's Retry-After)."""

    def __init__(self, error: LettaError, after: float | None = None) -> None:
        self.error = error
        self.after = after


async def _read_body(
    stream: AsyncIterable[bytes], content_encoding: str, limit: int, budget: DecodeBudget, hold: Hold
) -> bytearray:
    """A reply's body, gzip/deflate undone as it streams in, refused the moment the *decoded* size
    passes ``limit`` (a small compressed body can decode to gigabytes), and each piece counted
    against the process-wide ``budget`` before it is kept."""
    encoding = content_encoding.strip().lower()
    # wbits=47 takes a gzip or a zlib header, whichever comes.
    inflate = zlib.decompressobj(wbits=47) if encoding in ("gzip", "deflate") else None
    # One buffer grown in place: a list of pieces joined at the end held the body twice.
    body = bytearray()
    try:
        async for data in stream:
            while data:
                if inflate is None:
                    out, data = data, b""
                else:
                    try:
                        # Small pieces, never past the cap by more than a byte: the bomb stays in its box.
                        out = inflate.decompress(data, min(INFLATE_PIECE, limit - len(body) + 1))
                    except zlib.error as exc:
                        raise _BadBody("bad_encoding", f"does not decode ({exc})") from None
                    data = inflate.unconsumed_tail
                if len(body) + len(out) > limit:
                    raise _BadBody("body_too_large", f"over {limit} bytes decoded")
                if not budget.take(hold, len(out)):
                    await budget.wait_for(hold, len(out))
                body += out
    except BaseException:
        # The traceback keeps this frame alive while the retry loop sleeps on: the refused bytes
        # must not live on with it.
        del body
        raise
    return body


def _detail(body: bytes | bytearray) -> str:
    """A short, printable reason from an error body: Letta's ``detail`` is a string or a list,
    and proxies answer with HTML pages."""
    try:
        parsed = json.loads(body)
        detail = parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed
    except (ValueError, UnicodeDecodeError, RecursionError):
        detail = body[: MAX_DETAIL_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(str(detail).split())
    return text[:MAX_DETAIL_CHARS]


class LettaClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = defaults.REQUEST_TIMEOUT,
        max_retries: int = defaults.MAX_RETRIES,
        backoff_base: float = 0.25,
        max_requests_per_second: float = 0.0,
        max_connections: int = 12,
        observer: RequestObserver | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = httpx.Headers(headers)
        root = httpx.URL(base_url.rstrip("/"))
        self._timeouts = {"timeout": httpx.Timeout(timeout).as_dict()}
        # Requests go straight to the transport: an AsyncClient's per-request work (URL merging,
        # cookies, auth and redirect flows) cost more CPU than the exchange itself, and this client
        # needs none of it (docs/bench.md, "Request path").
        self._transport = letta_transport(
            root,
            # httpcore checks every pooled connection on every request: a pool sized to what is in
            # flight (enrichment workers, discovery, look-ups) costs a fraction of a large one.
            httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self.max_retries = max_retries
        self.base_url = str(root)
        self.key_set = bool(api_key)
        self._where = f"{root.host}:{root.port or (443 if root.scheme == 'https' else 80)}"
        self.total_timeout = timeout * 3
        self.max_body_bytes = MAX_BODY_BYTES
        self.budget = DECODE_BUDGET  # shared by every client: the bound is the process's
        self.backoff_base = backoff_base
        self.limiter = AdaptiveRateLimiter(max_requests_per_second)
        self.observer: RequestObserver = observer or _NullObserver()
        self.cursors = CursorBehaviour(self.observer)
        self.requests_sent = 0  # every attempt, answered or not
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- transport ---------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(BACKOFF_MAX, self.backoff_base * 2**attempt))

    async def _fetch(self, path: str, params: Any) -> tuple[httpx.Response, bytearray]:
        """One exchange, bounded in time as a whole (a slow-loris reply trickling bytes under the
        per-read timeout still ends) and in size (a runaway body is cut off, not buffered)."""
        url = httpx.URL(self.base_url + path, params=params)
        request = httpx.Request("GET", url, headers=self._headers, extensions=self._timeouts)
        async with asyncio.timeout(self.total_timeout):
            response = await self._transport.handle_async_request(request)
            encoding = response.headers.get("content-encoding", "")
            budget = self.budget
            hold = budget.open()
            try:
                body = await _read_body(response.stream, encoding, self.max_body_bytes, budget, hold)  # type: ignore[arg-type]
            finally:
                try:
                    await response.aclose()
                finally:
                    # Released only now: from here to the caller's json.loads nothing else runs.
                    budget.close(hold)
            return response, body

    async def _get_json(self, endpoint: str, path: str, params: Any = None) -> Any:
        """GET ``path`` and decode JSON, retrying what ``_exchange`` says is worth retrying, after
        the server's Retry-After or an exponential backoff with full jitter.

        Not tenacity: its ``AsyncRetrying`` costs 18-28 µs a call here (``python -m
        bench.request_path``), about 6 % of a whole request's CPU on this client's path, which is
        what the backlog benchmark is bound by (docs/bench.md, "Request path"); the policy itself
        is these few lines."""
        attempt = 0
        while True:
            try:
                return await self._exchange(endpoint, path, params)
            except _Retry as retry:
                if attempt >= self.max_retries:
                    raise retry.error from None
                after = retry.after
                wait = min(after, BACKOFF_MAX) if after is not None else self._backoff(attempt)
                log.debug("retrying %s in %.2fs after: %s", endpoint, wait, retry.error)
                attempt += 1
                await self._sleep(wait)

    async def _exchange(self, endpoint: str, path: str, params: Any) -> Any:
        """One request, counted, its reply decoded: the JSON body, or a ``LettaError`` raised, or
        ``_Retry`` wrapping one worth another attempt."""
        await self.limiter.acquire()
        self.requests_sent += 1
        started = time.perf_counter()
        try:
            response, body = await self._fetch(path, params)
        except (httpx.TimeoutException, TimeoutError) as exc:
            self.observer.observe_request(endpoint, "timeout", time.perf_counter() - started)
            what = f"timed out ({type(exc).__name__}) talking to {self._where}"
            raise _Retry(LettaTransportError(endpoint, what, timed_out=True)) from None
        except httpx.TransportError as exc:
            self.observer.observe_request(endpoint, "transport_error", time.perf_counter() - started)
            what = f"cannot reach {self._where}: {_os_error(exc)} ({type(exc).__name__})"
            raise _Retry(LettaTransportError(endpoint, what)) from None
        except _BadBody as exc:
            self.observer.observe_request(endpoint, exc.code, time.perf_counter() - started)
            self.observer.observe_malformed(endpoint)
            raise _Retry(LettaMalformedResponse(endpoint, f"body {exc}")) from None
        elapsed = time.perf_counter() - started
        status = response.status_code
        self.limiter.answered(elapsed, throttled=status == 429)
        self.observer.observe_request(endpoint, str(status), elapsed)
        if response.is_success:
            try:
                return json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                self.observer.observe_malformed(endpoint)
                raise _Retry(LettaMalformedResponse(endpoint, "body is not JSON")) from None
        error = _HTTP_ERRORS.get(status, LettaHTTPError)(endpoint, status, _detail(body))
        if status == 429 or (status >= 500 and status != 501):
            raise _Retry(error, after=_retry_after_seconds(response))
        raise error

    async def _get_model(self, endpoint: str, path: str, model: type[ModelT], params: Any = None) -> ModelT:
        body = await self._get_json(endpoint, path, params)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            self.observer.observe_malformed(endpoint)
            raise LettaMalformedResponse(endpoint, _validation_summary(exc)) from None

    async def _get_json_list(self, endpoint: str, path: str, params: Any) -> list[Any]:
        body = await self._get_json(endpoint, path, params)
        if not isinstance(body, list):
            self.observer.observe_malformed(endpoint)
            raise LettaMalformedResponse(endpoint, f"expected a list, got {type(body).__name__}")
        return body

    async def _get_list(
        self,
        endpoint: str,
        path: str,
        model: type[ModelT],
        params: Any = None,
        *,
        shortcut: Callable[[Any], ModelT | None] | None = None,
    ) -> list[ModelT]:
        """A JSON list of ``model``; ``shortcut`` may stand in a cheaper object for an item (None:
        validate it in full)."""
        items: list[ModelT] = []
        for raw in await self._get_json_list(endpoint, path, params):
            if shortcut is not None and (item := shortcut(raw)) is not None:
                items.append(item)
                continue
            try:
                items.append(model.model_validate(raw))
            except ValidationError as exc:
                # One broken item must not hide the rest of the page; it is counted and skipped.
                self.observer.observe_malformed(endpoint)
                log.warning("%s: skipped an item: %s", endpoint, _validation_summary(exc))
        return items

    # -- Runs API ----------------------------------------------------------------------------

    def iter_runs(
        self, *, page_size: int, active: bool = False, known: Callable[[str], bool] | None = None
    ) -> CursorWalk[Run]:
        """Pages of runs, newest first (so discovery can stop at its horizon), until a short page;
        each next page is read with whichever parameter this server continues such a list with.
        Runs for which ``known(id)`` holds are not validated: only their ID and ``created_at`` are
        read, which is all a listing of a run already handled is good for (paging and the horizon)."""
        shortcut = (lambda raw: _known_run(raw, known)) if known is not None else None

        async def fetch(param: Param | None, cursor: str | None) -> list[Run]:
            params = _page_params("desc", page_size, param, cursor)
            if active:
                params.append(("active", "true"))
            return await self._get_list(Endpoint.LIST_RUNS, "/v1/runs/", Run, params, shortcut=shortcut)

        return CursorWalk(Endpoint.LIST_RUNS, fetch, page_size=page_size, descending=True,
                          behaviour=self.cursors, ident=attrgetter("id"), key=_run_key)  # fmt: skip

    async def list_active_runs(self) -> list[Run]:
        """``GET /v1/runs/active``: every run in flight, one unpaged list (Letta 0.11 has no ``active``
        filter on the run list; 0.16.8 has both; Letta Cloud's reference only the filter)."""
        return await self._get_list(Endpoint.LIST_ACTIVE_RUNS, "/v1/runs/active", Run)

    def iter_steps(
        self,
        *,
        start: datetime,
        end: datetime,
        page_size: int,
        wanted: Callable[[str], bool] | None = None,
    ) -> CursorWalk[Step]:
        """Pages of the global steps list (``GET /v1/steps/``) created strictly between ``start`` and
        ``end`` (on Letta's clock), oldest first where the server honours the order. Steps of runs for
        which ``wanted(run_id)`` is false are not validated: only their ID and run are read."""
        window = [("start_date", start.isoformat()), ("end_date", end.isoformat())]
        shortcut = (lambda raw: _unwanted_step(raw, wanted)) if wanted is not None else None

        async def fetch(param: Param | None, cursor: str | None) -> list[Step]:
            params = _page_params("asc", page_size, param, cursor) + window
            return await self._get_list(Endpoint.LIST_STEPS, "/v1/steps/", Step, params, shortcut=shortcut)

        return CursorWalk(Endpoint.LIST_STEPS, fetch, page_size=page_size, descending=False,
                          behaviour=self.cursors, ident=attrgetter("id"))  # fmt: skip

    async def retrieve_run(self, run_id: str) -> Run:
        return await self._get_model(Endpoint.RETRIEVE_RUN, f"/v1/runs/{run_id}", Run)

    async def run_usage(self, run_id: str) -> UsageStatistics:
        return await self._get_model(
            Endpoint.RETRIEVE_USAGE_FOR_RUN, f"/v1/runs/{run_id}/usage", UsageStatistics
        )

    async def run_metrics(self, run_id: str) -> RunMetrics:
        return await self._get_model(
            Endpoint.RETRIEVE_METRICS_FOR_RUN, f"/v1/runs/{run_id}/metrics", RunMetrics
        )

    async def run_steps(self, run_id: str, *, page_size: int = MAX_PAGE) -> list[Step]:
        """Every step of a run, oldest first (steps carry no ``created_at``: pages are checked by ID)."""

        async def fetch(param: Param | None, cursor: str | None) -> list[Step]:
            params = _page_params("asc", page_size, param, cursor)
            return await self._get_list(Endpoint.LIST_STEPS_FOR_RUN, f"/v1/runs/{run_id}/steps", Step, params)

        walk = CursorWalk(Endpoint.LIST_STEPS_FOR_RUN, fetch, page_size=page_size, descending=False,
                          behaviour=self.cursors, ident=attrgetter("id"))  # fmt: skip
        return [step async for page in walk for step in page]

    async def run_trace(self, run_id: str, *, limit: int = MAX_PAGE) -> list[dict[str, Any]]:
        rows = await self._get_json_list(
            Endpoint.RETRIEVE_TRACE_FOR_RUN, f"/v1/runs/{run_id}/trace", [("limit", limit)]
        )
        return [row for row in rows if isinstance(row, dict)]

    async def retrieve_agent(self, agent_id: str) -> Named:
        return await self._get_model(Endpoint.RETRIEVE_AGENT, f"/v1/agents/{agent_id}", Named)

    async def retrieve_tool(self, tool_id: str) -> Named:
        return await self._get_model(Endpoint.RETRIEVE_TOOL, f"/v1/tools/{tool_id}", Named)


def _page_params(
    order: str, limit: int, param: Param | None, cursor: str | None
) -> list[tuple[str, str | int]]:
    params: list[tuple[str, str | int]] = [("order", order), ("limit", limit)]
    if param is not None and cursor is not None:
        params.append((param, cursor))
    return params


def _known_run(raw: Any, known: Callable[[str], bool]) -> Run | None:
    """A run already handled, as its ID and ``created_at`` only; None to validate it in full."""
    if not isinstance(raw, dict):
        return None
    run_id, created = raw.get("id"), raw.get("created_at")
    if not isinstance(run_id, str) or not isinstance(created, str) or not known(run_id):
        return None
    try:
        created_at = as_utc(datetime.fromisoformat(created))
    except ValueError:
        return None
    return _stand_in(_KNOWN_RUN, id=run_id, created_at=created_at)


def _unwanted_step(raw: Any, wanted: Callable[[str], bool]) -> Step | None:
    """A step of a run no one asked for, as its ID and run; None to validate it in full."""
    if not isinstance(raw, dict) or not isinstance(step_id := raw.get("id"), str):
        return None
    run_id = raw_step_run_id(raw)
    if run_id is None or wanted(run_id):
        return None
    return _stand_in(_UNWANTED_STEP, id=step_id, run_id=run_id)


# Rows not worth validating stand in as copies of these, which costs a fifth of ``model_construct``
# (that works every field's default out again): thousands a second on a busy server.
_KNOWN_RUN = Run.model_construct(id="-", status="completed")
_UNWANTED_STEP = Step.model_construct(id="-")


def _stand_in(template: ModelT, **values: Any) -> ModelT:
    copied = template.__copy__()
    copied.__dict__.update(values)
    return copied


def _run_key(run: Run) -> tuple[datetime, str] | None:
    return (run.created_at, run.id) if run.created_at is not None else None


def _os_error(exc: BaseException) -> str:
    """The operating system's words for a failed connection ("Connection refused", "Name or
    service not known"), found down the exception chain; else the exception's own text."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):  # an OSError whose errno means nothing
            return f"TLS certificate not trusted: {seen.verify_message} (CERTIFICATE_VERIFY_FAILED)"
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed: {seen.reason or seen}"
        if isinstance(seen, OSError) and (seen.strerror or seen.errno):
            # asyncio words a refusal "Connect call failed (...)"; the errno says it plainly.
            return os.strerror(seen.errno) if seen.errno and seen.errno > 0 else str(seen.strerror)
        seen = seen.__cause__ or seen.__context__
    return str(exc) or "no detail"


def _validation_summary(exc: ValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{exc.error_count()} invalid field(s), first {where or '<root>'}: {first.get('msg', '')}"[:300]
