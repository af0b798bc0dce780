"""The baselines: Letta clients with nothing but httpx and json, making the exporter's requests.

``python -m bench.clients capacity --mode bare``: read a backlog as the exporter's first poll does
(run list newest first with the ``after`` cursor, then ``/metrics`` and ``/steps`` per run, at most
``--concurrency`` in flight) with a bare ``httpx.AsyncClient``: the ceiling for a Python client.
``--mode naive``: the same requests one at a time with a blocking ``httpx.Client``.

``python -m bench.clients live``: a bare poller under live load with the exporter's request pattern
(each tick: run list down to the newest run seen minus the overlap window, the active list, then
``/metrics`` + ``/steps`` per newly finished run). It records when it finalised each run.

Each writes one JSON document to ``--out``. Bounded: capacity stops at the end of the backlog or at
``--max-seconds``; live stops after ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from array import array
from collections import Counter
from datetime import datetime
from typing import Any

import httpx

TERMINAL = frozenset({"completed", "failed", "cancelled"})
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32)  # as the exporter's client
HEADERS = {"Accept": "application/json", "Accept-Encoding": "gzip"}


def list_params(page_size: int, cursor: str | None, active: bool = False) -> list[tuple[str, str | int]]:
    """Newest first; the benchmark's simulator reads cursors as the spec (and Letta Cloud) do, so
    ``after`` continues the list: the baselines know the server, the exporter has to find out."""
    params: list[tuple[str, str | int]] = [("order", "desc"), ("limit", page_size)]
    if cursor:
        params.append(("after", cursor))
    if active:
        params.append(("active", "true"))
    return params


STEPS_PARAMS = [("order", "asc"), ("limit", 1000)]
ENDPOINTS = ("list_runs", "retrieve_metrics_for_run", "list_steps_for_run")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return float("nan")


# -- capacity: drain a backlog ---------------------------------------------------------------------


async def capacity_bare(
    base_url: str, page_size: int, concurrency: int, max_seconds: float
) -> dict[str, Any]:
    requests: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base_url, limits=LIMITS, headers=HEADERS, timeout=30) as client:

        async def get(endpoint: str, path: str, params: Any = None) -> Any:
            response = await client.get(path, params=params)
            requests[endpoint] += 1
            response.raise_for_status()
            return json.loads(response.content)

        started, cpu_started = time.perf_counter(), time.process_time()
        deadline = started + max_seconds
        ids: list[str] = []
        cursor = None
        while time.perf_counter() < deadline:
            page = await get("list_runs", "/v1/runs/", list_params(page_size, cursor))
            ids.extend(run["id"] for run in page if run.get("status") in TERMINAL)
            if len(page) < page_size:
                break
            cursor = page[-1]["id"]
        semaphore = asyncio.Semaphore(concurrency)
        done = 0

        async def enrich(run_id: str) -> None:
            nonlocal done
            async with semaphore:
                if time.perf_counter() > deadline:
                    return
                await get("retrieve_metrics_for_run", f"/v1/runs/{run_id}/metrics")
                await get("list_steps_for_run", f"/v1/runs/{run_id}/steps", STEPS_PARAMS)
            done += 1

        await asyncio.gather(*(enrich(run_id) for run_id in ids))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return _capacity_result(done, seconds, cpu, requests)


def capacity_naive(base_url: str, page_size: int, max_seconds: float) -> dict[str, Any]:
    requests: Counter[str] = Counter()
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=30) as client:

        def get(endpoint: str, path: str, params: Any = None) -> Any:
            response = client.get(path, params=params)
            requests[endpoint] += 1
            response.raise_for_status()
            return json.loads(response.content)

        started, cpu_started = time.perf_counter(), time.process_time()
        deadline = started + max_seconds
        ids: list[str] = []
        cursor = None
        while time.perf_counter() < deadline:
            page = get("list_runs", "/v1/runs/", list_params(page_size, cursor))
            ids.extend(run["id"] for run in page if run.get("status") in TERMINAL)
            if len(page) < page_size:
                break
            cursor = page[-1]["id"]
        done = 0
        for run_id in ids:
            if time.perf_counter() > deadline:
                break
            get("retrieve_metrics_for_run", f"/v1/runs/{run_id}/metrics")
            get("list_steps_for_run", f"/v1/runs/{run_id}/steps", STEPS_PARAMS)
            done += 1
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return _capacity_result(done, seconds, cpu, requests)


def _capacity_result(done: int, seconds: float, cpu: float, requests: Counter[str]) -> dict[str, Any]:
    return {
        "runs": done,
        "seconds": seconds,
        "runs_per_second": done / seconds if seconds > 0 else None,
        "cpu_seconds": cpu,
        "requests": dict(requests),
        "peak_rss_mb": _peak_rss_mb(),
    }


# -- live: poll under offered load ----------------------------------------------------------------


def _created(run: dict[str, Any]) -> float | None:
    value = run.get("created_at")
    if not value:
        return None
    return datetime.fromisoformat(value).timestamp()


async def live_bare(
    base_url: str, page_size: int, concurrency: int, poll_interval: float, overlap: float, duration: float
) -> dict[str, Any]:
    requests: Counter[str] = Counter()
    seen: dict[str, float] = {}  # run ID -> created, for finalised runs (the dedupe set)
    finalised_at = array("d")
    # Every request's time and endpoint (an index into ENDPOINTS): small, and exact for any window.
    request_times = array("d")
    request_endpoints = array("b")
    watermark: float | None = None
    semaphore = asyncio.Semaphore(concurrency)
    errors = 0
    async with httpx.AsyncClient(base_url=base_url, limits=LIMITS, headers=HEADERS, timeout=30) as client:

        def count(endpoint: str) -> None:
            requests[endpoint] += 1
            request_times.append(time.time())
            request_endpoints.append(ENDPOINTS.index(endpoint))

        async def get(endpoint: str, path: str, params: Any = None) -> Any:
            async with semaphore:
                response = await client.get(path, params=params)
            count(endpoint)
            response.raise_for_status()
            return json.loads(response.content)

        async def enrich(run_id: str) -> None:
            nonlocal errors
            async with semaphore:
                try:
                    for endpoint, path, params in (
                        ("retrieve_metrics_for_run", f"/v1/runs/{run_id}/metrics", None),
                        ("list_steps_for_run", f"/v1/runs/{run_id}/steps", STEPS_PARAMS),
                    ):
                        response = await client.get(path, params=params)
                        count(endpoint)
                        response.raise_for_status()
                        json.loads(response.content)
                except httpx.HTTPError:
                    errors += 1
                    seen.pop(run_id, None)  # found again on a later tick, like the exporter's retry
                    return
            finalised_at.append(time.time())

        async def tick() -> None:
            nonlocal watermark
            horizon = watermark - overlap if watermark is not None else None
            newest: float | None = None
            fresh: list[str] = []
            cursor = None
            while True:
                page = await get("list_runs", "/v1/runs/", list_params(page_size, cursor))
                reached = False
                for run in page:
                    created = _created(run)
                    if created is None:
                        continue
                    if horizon is not None and created < horizon:
                        reached = True
                        continue
                    newest = created if newest is None else max(newest, created)
                    if run["id"] not in seen and run.get("status") in TERMINAL:
                        seen[run["id"]] = created
                        fresh.append(run["id"])
                if reached or len(page) < page_size:
                    break
                cursor = page[-1]["id"]
            if newest is not None and (watermark is None or newest > watermark):
                watermark = newest
            cursor = None
            while True:  # the active list: the exporter reads it every tick for its gauges
                page = await get("list_runs", "/v1/runs/", list_params(page_size, cursor, active=True))
                if len(page) < page_size:
                    break
                cursor = page[-1]["id"]
            await asyncio.gather(*(enrich(run_id) for run_id in fresh))
            if watermark is not None:
                cutoff = watermark - 2 * overlap
                for run_id in [run_id for run_id, created in seen.items() if created < cutoff]:
                    del seen[run_id]

        started = time.monotonic()
        next_tick = started
        while time.monotonic() - started < duration:
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick = time.monotonic() + poll_interval
            try:
                await asyncio.wait_for(tick(), timeout=max(1.0, duration - (time.monotonic() - started)))
            except (httpx.HTTPError, TimeoutError):
                errors += 1
    return {
        "finalised_at": finalised_at.tolist(),
        "request_times": request_times.tolist(),
        "request_endpoints": [ENDPOINTS[index] for index in request_endpoints],
        "requests": dict(requests),
        "errors": errors,
        "peak_rss_mb": _peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("capacity", "live"))
    parser.add_argument("--mode", choices=("bare", "naive"), default="bare")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--overlap", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.what == "capacity" and args.mode == "naive":
        result = capacity_naive(args.base_url, args.page_size, args.max_seconds)
    elif args.what == "capacity":
        result = asyncio.run(capacity_bare(args.base_url, args.page_size, args.concurrency, args.max_seconds))
    else:
        result = asyncio.run(
            live_bare(
                args.base_url,
                args.page_size,
                args.concurrency,
                args.poll_interval,
                args.overlap,
                args.duration,
            )
        )
    with open(args.out, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
