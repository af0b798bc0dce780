"""Bad-input suite: each hostile reply gets a bounded, counted outcome and polling carries on."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import build_exporter
from exporter.config import Settings
from exporter.letta.budget import DecodeBudget
from exporter.letta.client import INFLATE_PIECE, LettaClient
from exporter.letta.errors import LettaMalformedResponse
from tests import hostile_server
from tests.hostile_server import HostileLetta, Reply, json_reply, run_json
from tests.support import ExporterProcess, runs_counted, select, served_samples, wait_for

MEMORY_BOUND_BYTES = 24 * 1024 * 1024


@dataclass
class Case:
    name: str
    runs: list[dict] = field(default_factory=list)
    list_route: Callable | None = None  # a hostile run list
    counted: int = 0  # runs the exporter should count despite the hostility
    malformed: bool = False  # letta_exporter_api_malformed_responses_total must rise
    discover_fails: bool = False  # letta_exporter_poll_errors_total{phase="discover"} must rise
    code: str | None = None  # a letta_exporter_api_requests_total code that must appear
    labels: dict[str, str] = field(default_factory=dict)  # label value checks on letta_runs_total


def slow_body(chunks: int, delay: float) -> Reply:
    return Reply(body=(b" " for _ in range(chunks)), delay_between_chunks=delay)


# Made once: a row must keep its created_at from one request to the next, as stored rows do.
DUPLICATES = [run_json(f"run-dup-{n}") for n in "abc"]


def pages_with_duplicates(path: str, query: dict) -> Reply:
    a, b, c = DUPLICATES
    if not query.get("before"):
        return json_reply([c, b])
    if query["before"] == ["run-dup-b"]:
        return json_reply([b, a])  # b again, on the next page
    return json_reply([])


def cursor_ignored(path: str, query: dict) -> Reply:
    # A server that no longer knows the cursor run (deleted) and starts from the top again.
    return json_reply([run_json("run-cur-2"), run_json("run-cur-1")])


def html(status: int, text: bytes) -> Callable:
    return lambda path, query: Reply(status, text, "text/html")


def raw(body: bytes | object) -> Callable:
    return lambda path, query: Reply(body=body)  # type: ignore[arg-type]


def without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


WRONG_TYPES = [
    run_json("run-ok-1"),
    {**run_json("run-bad-1"), "created_at": "yesterday"},
    {**run_json("run-bad-2"), "id": 12345},
    {**run_json("run-ok-2"), "ttft_ns": "soon"},
    "not an object",
    None,
]
MISSING_FIELDS = [run_json("run-ok-3"), without(run_json("run-nocreated"), "created_at")]
MISSING_ID = [run_json("run-ok-4"), {"status": "completed"}]
UNKNOWN_ENUMS = [
    run_json("run-new-1", stop_reason="Brand New Reason!!"),
    run_json("run-new-2", status="archived"),
]
LONG_STRINGS = [
    run_json("run-long-1", stop_reason="x" * 1_000_000, agent_id="agent-" + "a" * 10_000),
    run_json("run-" + "z" * 10_000),
]

CASES = [
    Case("non_json_body", list_route=html(200, b"<html>oops</html>"), malformed=True, discover_fails=True),
    Case("html_error_page", list_route=html(502, b"<h1>502 Bad Gateway</h1>"), discover_fails=True,
         code="502"),
    Case("deeply_nested_json", list_route=raw(b"[" * 200_000 + b"]" * 200_000), malformed=True,
         discover_fails=True),
    Case("huge_page", list_route=lambda p, q: Reply(body=(b"[" + b" " * 65536 for _ in range(64))),
         malformed=True, discover_fails=True, code="body_too_large"),
    Case("slow_loris", list_route=lambda p, q: slow_body(40, 0.1), discover_fails=True, code="timeout"),
    Case("wrong_types", runs=WRONG_TYPES, counted=2, malformed=True),
    Case("missing_created_at", runs=MISSING_FIELDS, counted=1, malformed=True),
    Case("missing_id", runs=MISSING_ID, counted=1, malformed=True),
    Case("unknown_status_and_stop_reason", runs=UNKNOWN_ENUMS, counted=1,
         labels={"stop_reason": "brand_new_reason"}),
    Case("very_long_strings", runs=LONG_STRINGS, counted=1, malformed=True),
    Case("duplicate_ids_across_pages", list_route=pages_with_duplicates, counted=3),
    # The first page is still taken in (counted once); the loop is caught and the poll ends there.
    Case("cursor_pointing_at_a_deleted_run", list_route=cursor_ignored, counted=2, discover_fails=True),
]  # fmt: skip


# The slow-loris case waits out the exporter's whole-exchange timeout: the full run's.
PARAMS = [pytest.param(c, id=c.name, marks=[pytest.mark.integration] if c.name == "slow_loris" else [])
          for c in CASES]  # fmt: skip


@pytest.mark.parametrize("case", PARAMS)
def test_hostile_reply_is_bounded_counted_and_polling_goes_on(case: Case) -> None:
    server = HostileLetta().start()
    page_size = 2 if case.name.startswith(("duplicate", "cursor")) else 100
    settings = Settings(
        base_url=server.base_url,
        max_requests_per_second=0,
        max_retries=1,
        request_timeout=0.3,
        page_size=page_size,
    )
    exporter = build_exporter(settings)
    exporter.client.max_body_bytes = 1024 * 1024
    exporter.client.backoff_base = 0.01

    async def scenario() -> None:
        await exporter.poller.tick()  # baseline on an empty server
        server.runs = case.runs
        server.list_route = case.list_route
        tracemalloc.start()
        for _ in range(2):  # a third failed poll in a row would open the circuit breaker
            await exporter.poller.tick()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_BOUND_BYTES, f"peak {peak} bytes"
        # The server comes right: polling goes on and reaches it.
        server.list_route = None
        server.runs = []
        await exporter.poller.tick()
        await exporter.enricher.join()
        await exporter.client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()

    samples = served_samples(exporter)
    assert samples[("letta_exporter_up", ())] == 1
    assert runs_counted(samples) == case.counted
    malformed = sum(select(samples, "letta_exporter_api_malformed_responses_total", ()).values())
    assert (malformed > 0) == case.malformed, malformed
    discover_errors = select(samples, "letta_exporter_poll_errors_total", ("phase",)).get(("discover",), 0)
    assert (discover_errors > 0) == case.discover_fails, discover_errors
    if case.code:
        assert select(samples, "letta_exporter_api_requests_total", ("code",)).get((case.code,), 0) > 0
    for label, value in case.labels.items():
        assert value in {k[0] for k in select(samples, "letta_runs_total", (label,))}
    for (name, labels), _ in samples.items():
        for _, value in labels:
            assert len(value) <= 128 and value.isprintable(), (name, value[:50])


def test_label_values_from_long_strings_are_capped() -> None:
    from exporter.labels import enum_label, free_label

    assert len(enum_label("x" * 10_000)) == 64
    assert len(free_label("m" * 10_000)) == 128
    assert free_label("bad\nmodel\x00name") == "bad_model_name"
    assert json.dumps(enum_label("Ünïcödé reason")).isascii()


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of JSON-ish spaces, gzipped to about 1 MB."""
    return hostile_server.gzip_bomb()


def status_bytes(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc status")


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), which no sampling can miss."""
    return status_bytes(pid, "VmHWM")


@pytest.mark.integration  # a real process, and a gigabyte to compress first
def test_a_gzip_bomb_is_refused_within_bounded_memory_and_polling_goes_on(gzip_bomb, tmp_path) -> None:
    """A 1 GiB gzip bomb as the run list, against the real exporter process: its peak RSS stays
    within 50 MB of what it was before, the reply counts as malformed, the next poll counts runs, and
    the memory goes back to the system (glibc would keep 16 MiB per bomb size class: exporter/malloc.py)."""
    server = HostileLetta().start()
    args = ["--poll-interval", "0.3", "--max-requests-per-second", "0", "--max-retries", "0"]
    exporter = ExporterProcess(tmp_path, args, env={"LETTA_BASE_URL": server.base_url})
    try:
        exporter.start()
        wait_for(lambda: exporter.scrape().get(("letta_exporter_up", ())) == 1, 10, what="first poll")
        time.sleep(1.0)  # a few polls: the baseline includes everything a normal poll touches
        assert exporter.proc is not None
        baseline = peak_rss_bytes(exporter.proc.pid)
        idle = status_bytes(exporter.proc.pid, "VmRSS")
        bomb = hostile_server.bomb_reply(gzip_bomb)
        server.list_route = lambda path, query: bomb

        def malformed() -> float:
            return exporter.scrape().get(
                ("letta_exporter_api_malformed_responses_total", (("endpoint", "list_runs"),)), 0
            )

        wait_for(lambda: malformed() >= 2, 20, what="two bombs refused")
        grown = peak_rss_bytes(exporter.proc.pid) - baseline
        assert grown < 50 * 1024 * 1024, f"peak RSS grew by {grown / 2**20:.0f} MiB"
        codes = select(exporter.scrape(), "letta_exporter_api_requests_total", ("code",))
        assert codes.get(("body_too_large",), 0) >= 2

        server.list_route = None
        server.runs = [run_json("run-after-bomb")]
        wait_for(lambda: runs_counted(exporter.scrape()) == 1, 20, what="polling to go on")
        kept = status_bytes(exporter.proc.pid, "VmRSS") - idle
        assert kept < 8 * 1024 * 1024, f"RSS stayed {kept / 2**20:.0f} MiB up after the bombs"
    finally:
        exporter.stop()
        server.stop()
    assert "Traceback" not in exporter.logs()


# -- replies decoding at once: the process-wide budget (exporter/letta/budget.py) --------------------

CAP = 2 * 1024 * 1024  # each reply's own cap in these tests (MAX_BODY_BYTES in the exporter)
SHARED = 1024 * 1024  # what the replies besides the eldest share


class Streamed(httpx.AsyncByteStream):
    """A body handed over ``piece`` bytes at a time, each read a turn of the event loop: the
    replies in flight decode side by side, in an order that depends on nothing but the code."""

    def __init__(self, body: bytes, piece: int) -> None:
        self.body = body
        self.piece = piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for at in range(0, len(self.body), self.piece):
            await asyncio.sleep(0)
            yield self.body[at : at + self.piece]


class StreamingTransport(httpx.AsyncBaseTransport):
    """Answers ``/bomb`` with a gzip bomb and anything else with ``valid`` (no sockets, no timing)."""

    def __init__(self, bomb: bytes, valid: bytes) -> None:
        self.bomb = bomb
        self.valid = valid

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/bomb":  # 512 bytes a read: about 512 KiB decoded
            return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Streamed(self.bomb, 512))
        return httpx.Response(200, stream=Streamed(self.valid, 64 * 1024))


def budget_client(budget: DecodeBudget, transport: httpx.AsyncBaseTransport) -> LettaClient:
    client = LettaClient("http://letta.invalid", max_retries=0)
    client.max_body_bytes = CAP
    client.budget = budget
    client._transport = transport  # type: ignore[assignment]
    return client


async def bombs_alongside(client: LettaClient, valid: Awaitable[Any], in_flight: int) -> Any:
    """``in_flight`` bombs read at all times, one more started as each is refused, until ``valid`` is
    read (or 200 bombs have been: a reply that never gets its turn)."""
    started = 0

    async def bomb() -> None:
        nonlocal started
        started += 1
        with pytest.raises(LettaMalformedResponse, match="over"):
            await client._get_json("list_runs", "/bomb")

    reading = asyncio.ensure_future(valid)
    bombs = {asyncio.ensure_future(bomb()) for _ in range(in_flight)}
    while not reading.done() and started < 200:
        done, bombs = await asyncio.wait(bombs | {reading}, return_when=asyncio.FIRST_COMPLETED)
        bombs -= {reading}
        for finished in done - {reading}:
            finished.result()
            bombs.add(asyncio.ensure_future(bomb()))
    for task in bombs:
        task.cancel()
    await asyncio.gather(*bombs, return_exceptions=True)
    assert reading.done(), f"the valid reply was still waiting after {started} bombs"
    return reading.result()


def peak_bytes_held(budget: DecodeBudget, bomb: bytes, valid: bytes, in_flight: int) -> tuple[int, bool]:
    """``in_flight`` bombs decoding side by side, and a valid reply read meanwhile: the peak of what
    Python allocated (tracemalloc: counted apart from the budget's own books), and whether the valid
    reply was read whole."""
    client = budget_client(budget, StreamingTransport(bomb, valid))

    async def scenario() -> tuple[int, bool]:
        tracemalloc.start()
        try:
            # The valid reply starts after the bombs: it is not the eldest, and bombs keep coming.
            async def late_valid() -> bool:
                for _ in range(in_flight):
                    await asyncio.sleep(0)
                # The body as read, compared in place: parsing it would count in the peak too.
                _, body = await client._fetch("/valid", None)
                return body == valid

            # Only a guard: a reply that waits forever fails the test instead of hanging it.
            async with asyncio.timeout(60):
                whole = await bombs_alongside(client, late_valid(), in_flight)
            return tracemalloc.get_traced_memory()[1], whole
        finally:
            tracemalloc.stop()

    return asyncio.run(scenario())


@pytest.fixture(scope="module")
def small_bomb() -> bytes:
    return hostile_server.gzip_bomb(64)  # 64 MiB decoded: far past CAP


VALID_ITEMS = 30_000  # about 1.5 MB of JSON: more than SHARED, less than CAP
VALID_BODY = json.dumps(
    [{"id": f"step-{n:08d}", "model": "gpt-4o-mini"} for n in range(VALID_ITEMS)]
).encode()


def test_concurrent_bombs_hold_no_more_than_the_budget_and_a_large_valid_reply_still_reads(
    small_bomb,
) -> None:
    """Six bombs decode side by side, a new one started as each is refused, while a valid reply
    larger than the shared part is read: what they hold together stays within one reply's cap plus
    the shared part (plus the piece each has just inflated and the buffers' headroom), and the valid
    reply is read whole once it is the eldest, however many bombs started after it."""
    assert CAP > len(VALID_BODY) > SHARED
    peak, whole = peak_bytes_held(DecodeBudget(SHARED), small_bomb, VALID_BODY, in_flight=6)
    assert whole
    # What the budget counts, with a buffer's headroom (an eighth), and for each of the seven readers
    # the piece it has inflated but not yet counted, and its inflater's state.
    bound = (CAP + SHARED) * 9 // 8 + 7 * (INFLATE_PIECE + 64 * 1024)
    assert peak < bound, f"{peak / 2**20:.2f} MiB held at once"

    # The same replies with no shared limit: the scenario does hold more than that, so the bound
    # above is the budget's doing.
    unbounded, _ = peak_bytes_held(DecodeBudget(1 << 40), small_bomb, VALID_BODY, in_flight=6)
    assert unbounded > 2 * bound, f"{unbounded / 2**20:.1f} MiB"


def test_the_eldest_reply_goes_on_while_small_ones_come_and_go() -> None:
    """The wait order: a reply past the shared part waits for the replies older than it, not for the
    small ones that keep starting after it."""

    async def scenario() -> None:
        budget = DecodeBudget(shared=100)
        eldest = budget.open()
        assert budget.take(eldest, 10_000)  # the eldest is bounded by its own cap alone
        large = budget.open()
        assert budget.take(large, 60) and not budget.take(large, 60)
        waiting = asyncio.ensure_future(budget.wait_for(large, 60))
        for _ in range(20):
            small = budget.open()
            assert budget.take(small, 40)  # what is left of the shared part
            await asyncio.sleep(0)
            budget.close(small)
            await asyncio.sleep(0)
            assert not waiting.done()
        budget.close(eldest)
        await asyncio.wait_for(waiting, 1)
        assert large.held == 120 and budget.total == 120
        follower = budget.open()
        assert budget.take(follower, 100) and not budget.take(follower, 1)  # the share is whole again
        budget.close(large)  # the follower is the eldest now: bounded by its cap alone
        assert budget.take(follower, 10_000)
        budget.close(follower)
        assert budget.total == 0

    asyncio.run(scenario())


def test_a_refused_reply_is_not_kept_while_the_retry_waits(small_bomb) -> None:
    """The retry loop sleeps inside the handler of the refusal; the refused bytes must be gone by
    then, not kept alive by the traceback (four workers backing off held 16 MiB each)."""
    held_while_waiting: list[int] = []

    async def scenario() -> None:
        client = budget_client(DecodeBudget(SHARED), StreamingTransport(small_bomb, b"[]"))
        client.max_retries = 1
        client.backoff_base = 0.0

        async def sleep(seconds: float) -> None:
            held_while_waiting.append(tracemalloc.get_traced_memory()[0] - before)

        client._sleep = sleep
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            with pytest.raises(LettaMalformedResponse):
                await client._get_json("list_runs", "/bomb")
        finally:
            tracemalloc.stop()

    asyncio.run(scenario())
    assert held_while_waiting and held_while_waiting[0] < CAP // 4, held_while_waiting


def test_glibc_is_told_to_keep_its_mmap_threshold(monkeypatch) -> None:
    from exporter.malloc import fix_mmap_threshold

    assert fix_mmap_threshold() is True  # this machine has glibc, as the container image does
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold() is False  # the operator's setting stands
