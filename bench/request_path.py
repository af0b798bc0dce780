"""CPU per request on each way of making one: what ``exporter/letta/transport.py`` and the client's
retry loop are measured by (docs/bench.md, "Request path").

``python -m bench.request_path [--requests N]`` starts the simulator with a few finished runs, then
in this process GETs one run's ``/metrics`` N times per variant, four at a time, and prints CPU µs
per request (``time.process_time``, so the simulator's work is not counted) and requests per second:

- ``AsyncClient.get``: httpx as most code uses it, on anyio (the bare loop of bench/clients.py);
- ``AsyncClient on asyncio``: the same client over ``AsyncioTransport``;
- ``transport, anyio`` / ``transport, asyncio``: ``handle_async_request`` straight on httpx's
  transport, with its default pool and with the asyncio one;
- ``LettaClient._get_json``: the exporter's whole request path (rate limiter, counting, bounded
  decoding, retry loop);
- ``tenacity per call``: ``AsyncRetrying`` around a coroutine that returns at once, when tenacity
  is installed: what it would add to every request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import answers, free_port, python, wait_until

CONCURRENCY = 4
LIMITS = httpx.Limits(max_connections=12, max_keepalive_connections=12)


async def _measure(request: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    await request()  # connections opened, imports done
    per_worker = count // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_worker):
            await request()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    done = per_worker * CONCURRENCY
    return (time.process_time() - cpu) / done * 1e6, done / (time.perf_counter() - wall)


async def _variants(base_url: str, path: str, count: int) -> list[tuple[str, float, float]]:
    from exporter.letta.client import LettaClient
    from exporter.letta.transport import AsyncioTransport

    url = httpx.URL(base_url + path)
    results = []

    async def via_transport(transport: httpx.AsyncBaseTransport) -> None:
        response = await transport.handle_async_request(httpx.Request("GET", url))
        body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        await response.aclose()
        json.loads(body)

    plain = httpx.AsyncClient(base_url=base_url, limits=LIMITS)
    on_asyncio = httpx.AsyncClient(base_url=base_url, transport=AsyncioTransport(limits=LIMITS))
    anyio_transport = httpx.AsyncHTTPTransport(limits=LIMITS)
    asyncio_transport = AsyncioTransport(limits=LIMITS)
    letta = LettaClient(base_url, max_connections=12)
    variants: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("AsyncClient.get", lambda: plain.get(path)),
        ("AsyncClient on asyncio", lambda: on_asyncio.get(path)),
        ("transport, anyio", lambda: via_transport(anyio_transport)),
        ("transport, asyncio", lambda: via_transport(asyncio_transport)),
        ("LettaClient._get_json", lambda: letta._get_json("bench", path)),
    ]
    try:
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_random_exponential,
        )

        retrying = AsyncRetrying(stop=stop_after_attempt(4), wait=wait_random_exponential(0.25, max=30),
                                 retry=retry_if_exception_type(OSError), reraise=True)  # fmt: skip

        async def nothing() -> None:
            pass

        variants.append(("tenacity per call", lambda: retrying.copy()(nothing)))
    except ImportError:
        pass
    for name, request in variants:
        cpu_us, per_second = await _measure(request, count)
        results.append((name, cpu_us, per_second))
    for closable in (plain, on_asyncio, anyio_transport, asyncio_transport, letta):
        await closable.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_path", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args(argv)
    port = free_port()
    sim = subprocess.Popen(
        python("-m", "exporter.simulator", "--host", "127.0.0.1", "--port", str(port), "--rate", "0",
               "--history", "20", "--agents", "5", "--seed", "1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until(lambda: answers(base_url + "/v1/health"), timeout=60):
            raise SystemExit("the simulator did not answer")
        run_id = httpx.get(base_url + "/v1/runs/", params={"limit": 1}).json()[0]["id"]
        results = asyncio.run(_variants(base_url, f"/v1/runs/{run_id}/metrics", args.requests))
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    print(f"{args.requests} GETs of /v1/runs/{{id}}/metrics per variant, {CONCURRENCY} in flight\n")
    print("| variant | CPU µs / request | requests / s |\n|---|---:|---:|")
    for name, cpu_us, per_second in results:
        print(f"| {name} | {cpu_us:.0f} | {per_second:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
