"""Names for IDs (agents, tools), looked up a few per poll, cached, refreshed hourly.

Look-ups are decoration, so they take a small share of the API calls: at most 1 % of the calls made
since the last round (at least one a poll, at most five), which keeps a fleet of new agents from
costing more requests than the runs themselves. Metrics keep IDs as labels (names change; an ID
does not); ``letta_agent_info`` and ``letta_tool_info`` carry the names for a join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from exporter.letta.errors import LettaError, LettaNotFound
from exporter.letta.models import is_safe_id

log = logging.getLogger(__name__)

REFRESH_EVERY = 3600.0
PER_POLL = 5  # a few a poll: a fleet of new agents is not a burst of requests
SHARE = 0.01  # of the API calls made since the last round
CONCURRENCY = 4


class NameLookup:
    """Names for the IDs ``ids()`` gives, read with ``fetch(id)`` (an object with a ``name``); each
    round's names are handed to ``publish``."""

    def __init__(
        self,
        what: str,
        ids: Callable[[], Iterable[str]],
        fetch: Callable[[str], Awaitable[Any]],
        publish: Callable[[dict[str, str]], None],
        *,
        calls: Callable[[], int],  # API calls made so far, for the share
    ) -> None:
        self.what = what
        self.ids = ids
        self.fetch = fetch
        self.publish = publish
        self.calls = calls
        self._calls_before = 0
        self._checked: dict[str, float] = {}
        self._semaphore = asyncio.Semaphore(CONCURRENCY)

    async def refresh(self) -> None:
        now = time.time()
        due = [
            item
            for item in self.ids()
            if is_safe_id(item) and now - self._checked.get(item, float("-inf")) > REFRESH_EVERY
        ][: self._allowance()]
        if not due:
            return
        found = await asyncio.gather(*(self._look_up(item, now) for item in due))
        self.publish({item: name for item, name in zip(due, found, strict=True) if name})

    def _allowance(self) -> int:
        made = self.calls()
        allowed = int((made - self._calls_before) * SHARE)
        self._calls_before = made
        return max(1, min(PER_POLL, allowed))

    async def _look_up(self, item: str, now: float) -> str | None:
        async with self._semaphore:
            try:
                found = await self.fetch(item)
            except LettaNotFound:
                self._checked[item] = now
                return None
            except LettaError as exc:
                log.debug("%s %s name lookup failed: %s", self.what, item, exc)
                return None
        self._checked[item] = now
        return found.name
