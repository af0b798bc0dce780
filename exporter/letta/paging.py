"""Cursor paging that is right whatever a server's list cursors mean (docs/architecture.md, "Paging",
has what each server's mean). No meaning is assumed: each next page is checked against the row it
continues from, and a page that did not move strictly past that row was read with the wrong
parameter and is read again with the other one. What worked is remembered per list.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, Literal, Protocol, TypeVar

from exporter.letta.errors import LettaMalformedResponse, PagingError

log = logging.getLogger(__name__)

Param = Literal["before", "after"]
# The spec's meaning, and Letta Cloud's: ``after`` continues a list in its sort order.
SPEC_PARAM: Param = "after"
RowT = TypeVar("RowT")


class CursorObserver(Protocol):
    def observe_cursor(self, endpoint: str, order: str, param: str, semantics: str) -> None: ...


class CursorBehaviour:
    """Which parameter continues each list past a cursor, as learnt from the server's answers."""

    def __init__(self, observer: CursorObserver | None = None) -> None:
        self._params: dict[str, Param] = {}
        self._observer = observer

    def param(self, endpoint: str) -> Param:
        return self._params.get(endpoint, SPEC_PARAM)

    def known(self, endpoint: str) -> bool:
        return endpoint in self._params

    def learn(self, endpoint: str, order: str, param: Param) -> None:
        previous = self._params.get(endpoint)
        if previous == param:
            return
        self._params[endpoint] = param
        spec = param == SPEC_PARAM
        meaning = "as the spec says" if spec else "the reverse of the spec, as Letta 0.16.8"
        if previous is None:
            log.info(
                "%s: this server continues order=%s lists with %s= (%s)", endpoint, order, param, meaning
            )
        else:
            log.warning("%s: the server now continues order=%s lists with %s=, no longer %s= (%s)",
                        endpoint, order, param, previous, meaning)  # fmt: skip
        if self._observer is not None:
            self._observer.observe_cursor(endpoint, order, param, "spec" if spec else "reversed")


class CursorWalk(Generic[RowT]):
    """Pages of one list in one sort order, each checked to move strictly past the last row read.

    ``fetch(param, cursor)`` reads one page (``param`` and ``cursor`` are None for the first);
    ``key`` gives a row's place in the sort order, ``(created_at, id)``, or None where the row
    does not carry one, in which case only "not read before in this walk" is checked.
    """

    def __init__(
        self,
        endpoint: str,
        fetch: Callable[[Param | None, str | None], Awaitable[list[RowT]]],
        *,
        page_size: int,
        descending: bool,
        behaviour: CursorBehaviour,
        ident: Callable[[RowT], str | None],
        key: Callable[[RowT], tuple[Hashable, ...] | None] = lambda row: None,
    ) -> None:
        self.endpoint = endpoint
        self.order = "desc" if descending else "asc"
        self._fetch = fetch
        self._page_size = page_size
        self._descending = descending
        self._behaviour = behaviour
        self._ident = ident
        self._key = key
        self._seen: set[str] = set()

    async def __aiter__(self) -> AsyncIterator[list[RowT]]:
        page = await self._fetch(None, None)
        full = len(page) >= self._page_size
        while True:
            yield page
            if not full:
                return
            self._seen.update(ident for row in page if (ident := self._ident(row)) is not None)
            page, full = await self._next(page[-1])

    async def _next(self, cursor_row: RowT) -> tuple[list[RowT], bool]:
        """The page after ``cursor_row``, and whether the server filled it (then another may follow)."""
        cursor = self._ident(cursor_row)
        if cursor is None:
            raise LettaMalformedResponse(self.endpoint, "a full page ends in a row without an id to page on")
        behaviour = self._behaviour
        param = behaviour.param(self.endpoint)
        other: Param = "before" if param == "after" else "after"
        page, full = await self._read(param, cursor)
        if self._moved_past(page, cursor_row):
            if page:
                behaviour.learn(self.endpoint, self.order, param)
                return page, full
            if behaviour.known(self.endpoint):
                return page, full
            # Empty under an unproven parameter: the end of the list, or the wrong side of a cursor
            # with nothing beyond it. Only the other parameter can tell.
            retry, retry_full = await self._read(other, cursor)
            if retry and self._moved_past(retry, cursor_row):
                behaviour.learn(self.endpoint, self.order, other)
                return retry, retry_full
            if retry:  # the other one reads backwards: this one was right, and the list has ended
                behaviour.learn(self.endpoint, self.order, param)
            return page, full
        retry, retry_full = await self._read(other, cursor)
        if self._moved_past(retry, cursor_row):
            behaviour.learn(self.endpoint, self.order, other)
            return retry, retry_full
        raise PagingError(
            self.endpoint,
            f"neither {param}= nor {other}= moved the order={self.order} list past row {cursor}; "
            "the server ignores list cursors or no longer has that row",
        )

    async def _read(self, param: Param, cursor: str) -> tuple[list[RowT], bool]:
        page = await self._fetch(param, cursor)
        full = len(page) >= self._page_size
        if page and self._ident(page[0]) == cursor:
            page = page[1:]  # a server whose cursors include the cursor row itself
        return page, full

    def _moved_past(self, page: list[RowT], cursor_row: RowT) -> bool:
        limit = self._key(cursor_row)
        for row in page:
            if self._ident(row) in self._seen:
                return False
            key = self._key(row)
            if key is None or limit is None:
                continue
            if (key >= limit) if self._descending else (key <= limit):  # type: ignore[operator]
                return False
        return True
