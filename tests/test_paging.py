"""CursorWalk against in-memory lists whose cursors mean what each kind of server makes them mean.

The lists here are pure functions of (order, cursor parameter, cursor row), written from the table
in docs/architecture.md ("Paging"), not from the walker's code; the loopback tests against the
simulator are in test_poller.py and test_client.py.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from exporter.letta.errors import LettaMalformedResponse
from exporter.letta.paging import CursorBehaviour, CursorWalk, PagingError


@dataclass(frozen=True)
class Row:
    id: str
    created: int


ROWS = [Row(f"r{n:03d}", n // 3) for n in range(47)]  # ties on created, broken by id


def server(meaning: str, *, inclusive: bool = False):
    """A list endpoint: ``meaning`` is "spec" (cursors relative to the sort order), "reversed"
    (Letta 0.16.8's run list), "absolute" (after = newer, before = older, whatever the order) or
    "ignored" (cursors are not applied)."""
    requests: list[tuple[str | None, str | None]] = []

    def answer(descending: bool, limit: int):
        async def fetch(param: str | None, cursor: str | None) -> list[Row]:
            requests.append((param, cursor))
            ordered = sorted(ROWS, key=lambda r: (r.created, r.id), reverse=descending)
            if param is None or meaning == "ignored":
                return ordered[:limit]
            at = next(i for i, row in enumerate(ordered) if row.id == cursor)
            # Which side of the cursor, in the sort order: "later" (past it) or "earlier".
            later = {
                "spec": param == "after",
                "reversed": param == "before",
                "absolute": (param == "after") != descending,
            }[meaning]
            chosen = ordered[at + 1 :] if later else ordered[:at]
            if inclusive:
                chosen = [ordered[at], *chosen] if later else [*chosen, ordered[at]]
            return chosen[:limit]  # as SQL does: filter, sort, then limit

        return fetch

    return answer, requests


def walk_all(fetch, behaviour: CursorBehaviour, *, descending: bool, page_size: int) -> list[str]:
    async def go() -> list[str]:
        walk = CursorWalk("list", fetch, page_size=page_size, descending=descending, behaviour=behaviour,
                          ident=lambda r: r.id, key=lambda r: (r.created, r.id))  # fmt: skip
        return [row.id async for page in walk for row in page]

    return asyncio.run(go())


def expected(descending: bool) -> list[str]:
    ids = [row.id for row in ROWS]
    return ids[::-1] if descending else ids


@pytest.mark.parametrize("meaning", ["spec", "reversed", "absolute"])
@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("page_size", [1, 5, 46, 47, 100])
def test_every_row_once_whatever_the_cursors_mean(meaning, descending, page_size) -> None:
    answer, _ = server(meaning)
    got = walk_all(
        answer(descending, page_size), CursorBehaviour(), descending=descending, page_size=page_size
    )
    assert got == expected(descending)


@pytest.mark.parametrize("meaning", ["spec", "reversed"])
def test_a_server_whose_cursors_include_the_cursor_row_is_read_once(meaning) -> None:
    answer, _ = server(meaning, inclusive=True)
    got = walk_all(answer(True, 10), CursorBehaviour(), descending=True, page_size=10)
    assert got == expected(True)


def test_the_parameter_is_learnt_once_and_costs_one_extra_request(caplog) -> None:
    seen: list[tuple[str, str, str, str]] = []

    class Observer:
        def observe_cursor(self, endpoint: str, order: str, param: str, semantics: str) -> None:
            seen.append((endpoint, order, param, semantics))

    behaviour = CursorBehaviour(Observer())
    answer, requests = server("reversed")
    caplog.set_level(logging.INFO, logger="exporter.letta.paging")
    for _ in range(3):
        assert walk_all(answer(True, 10), behaviour, descending=True, page_size=10) == expected(True)
    # 5 pages a walk; the first walk tried after= once, then before= from there on.
    assert len(requests) == 3 * 5 + 1
    assert [param for param, _ in requests[1:3]] == ["after", "before"]
    assert seen == [("list", "desc", "before", "reversed")]
    assert sum("continues order=desc lists with before=" in r.message for r in caplog.records) == 1


def test_a_server_that_changes_its_meaning_is_followed_and_the_change_logged(caplog) -> None:
    behaviour = CursorBehaviour()
    spec, _ = server("spec")
    reversed_, _ = server("reversed")
    assert walk_all(spec(True, 10), behaviour, descending=True, page_size=10) == expected(True)
    caplog.set_level(logging.WARNING, logger="exporter.letta.paging")
    assert walk_all(reversed_(True, 10), behaviour, descending=True, page_size=10) == expected(True)
    assert behaviour.param("list") == "before"
    assert any("no longer after=" in r.message for r in caplog.records)


def test_a_server_that_ignores_cursors_fails_clearly_after_two_requests() -> None:
    answer, requests = server("ignored")
    with pytest.raises(PagingError, match="neither after= nor before= moved the order=desc list"):
        walk_all(answer(True, 10), CursorBehaviour(), descending=True, page_size=10)
    assert len(requests) == 3  # the first page, then each parameter once: no loop
    assert issubclass(PagingError, LettaMalformedResponse)  # counted as a malformed reply


def test_rows_without_a_sort_key_are_checked_by_id() -> None:
    """Steps carry no created_at: a page repeating rows already read is the wrong direction."""
    answer, _ = server("reversed")

    async def go() -> list[str]:
        walk = CursorWalk("steps", answer(False, 10), page_size=10, descending=False,
                          behaviour=CursorBehaviour(), ident=lambda r: r.id)  # fmt: skip
        return [row.id async for page in walk for row in page]

    assert asyncio.run(go()) == expected(False)
