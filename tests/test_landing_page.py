"""The landing page ``/`` says which Letta the exporter polls (never its credentials), whether it is
ready, when it last reached Letta and its version, besides linking the endpoints."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.exposition import Exposition
from exporter.server import Status, make_app, public_url


def get_landing(ready: bool, status: Status | None) -> str:
    app = make_app(Exposition(CollectorRegistry()), lambda: ready, status=status)
    replies: list[Any] = []
    body = b"".join(app({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *a: replies.append(a)))
    assert replies[0][0] == "200 OK"
    return body.decode()


def row(page: str, name: str) -> str:
    return page.split(f"<tr><th>{name}</th><td>", 1)[1].split("</td>", 1)[0]


def test_before_the_first_successful_poll() -> None:
    page = get_landing(False, Status("http://letta.internal:8283", lambda: None))
    assert row(page, "Letta") == "http://letta.internal:8283"
    assert row(page, "Ready") == "no: waiting for the first successful poll"
    assert row(page, "Last successful poll") == "never"
    assert row(page, "Version") == __version__
    for link in ("metrics", "healthz", "readyz"):
        assert f'href="{link}"' in page


def test_after_a_successful_poll() -> None:
    last = time.time() - 42
    page = get_landing(True, Status("https://api.letta.com", lambda: last))
    assert row(page, "Ready") == "yes"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last))
    assert row(page, "Last successful poll") in (f"{stamp} (42 s ago)", f"{stamp} (43 s ago)")


def test_credentials_in_the_base_url_are_never_shown() -> None:
    url = "https://exporter:sk-let-secret-123@letta.example.com:8443/api/?token=abc#frag"
    page = get_landing(True, Status(url, lambda: None))
    assert row(page, "Letta") == "https://letta.example.com:8443/api/"
    assert "sk-let-secret-123" not in page and "token=abc" not in page and "exporter:" not in page
    assert public_url("https://u:p@letta.example.com?token=abc") == "https://letta.example.com"


def test_public_url_keeps_plain_urls_as_they_are() -> None:
    for url in ("http://127.0.0.1:8283", "https://api.letta.com", "http://[::1]:8283/letta"):
        assert public_url(url) == url


def test_the_page_is_html_escaped() -> None:
    page = get_landing(True, Status("http://letta<script>:8283", lambda: None))
    assert "<script>" not in page and "&lt;script&gt;" in page
