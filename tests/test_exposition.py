"""/metrics as served: the registry's text and the run totals' pieces, plain or gzipped, over real
HTTP on loopback, equal to prometheus-client's own rendering of the same collectors."""

from __future__ import annotations

import gzip

import httpx
from prometheus_client import CollectorRegistry, Counter, generate_latest

from exporter.exposition import Exposition
from exporter.server import HttpServer, make_app
from exporter.totals import RunTotals, TotalsText
from tests.support import TotalsCollector
from tests.test_totals import BUCKETS, outcome


def test_served_text_plain_and_gzipped_equals_prometheus_clients_rendering() -> None:
    registry = CollectorRegistry()
    Counter("letta_exporter_demo", "A counter in the registry.", registry=registry).inc(3)
    totals = RunTotals(BUCKETS)
    for n in range(600):  # enough series for the body to span several chunks
        totals.record(outcome(n), (f"agent-{n % 251}",))
    exposition = Exposition(registry, extra=TotalsText(totals).render)
    server = HttpServer(make_app(exposition, lambda: True), "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        exposition.refresh()
        plain = httpx.get(url, headers={"Accept-Encoding": "identity"})
        packed = httpx.get(url, headers={"Accept-Encoding": "gzip"})
    finally:
        server.stop()
    reference = CollectorRegistry()
    reference.register(TotalsCollector(totals))
    expected = generate_latest(registry) + generate_latest(reference)
    assert len(expected) > 256 * 1024
    assert plain.content == expected and int(plain.headers["content-length"]) == len(expected)
    assert packed.headers["content-encoding"] == "gzip" and packed.content == expected
    assert gzip.decompress(exposition.current().gzipped) == expected
