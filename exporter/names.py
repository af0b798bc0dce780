"""Names for IDs (agents, tools), looked up a few per poll, cached, refreshed hourly.

Look-ups are decoration, so they take a small share of the API calls: at most 1 % of the calls made
since the last round (at least one a poll, at most five), which keeps a fleet of new agents from
costing more requests than the runs themselves.

Metrics keep IDs as labels (names change; an ID does not), and ``letta_agent_info`` and
``letta_tool_info`` carry the names for a join, as the README's metric table shows.
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


class NameLookup:
    """Names for the IDs ``ids()`` gives, read with ``fetch(id)`` (an object with a ``name``) and
    handed whole to ``publish`` after each round."""

    def __init__(
        self,
        what: str,
        ids: Callable[[], Iterable[str]],
        fetch: Callable[[str], Awaitable[Any]],
        publish: Callable[[dict[str, str]], None],
        *,
        refresh_every: float = 3600.0,
        per_tick: int = 5,  # a few a poll: a fleet of new agents is not a burst of requests
        share: float = 0.01,
        calls: Callable[[], int] | None = None,  # API calls made so far, for the share
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.what = what
        self.ids = ids
        self.fetch = fetch
        self.publish = publish
        self.refresh_every = refresh_every
        self.per_tick = per_tick
        self.share = share
        self.calls = calls
        self._calls_before = 0
        self.clock = clock
        self._names: dict[str, str] = {}
        self._checked: dict[str, float] = {}
        self._semaphore = asyncio.Semaphore(concurrency)

    async def refresh(self) -> None:
        now = self.clock()
        due = [
            item
            for item in self.ids()
            if is_safe_id(item) and now - self._checked.get(item, float("-inf")) > self.refresh_every
        ][: self._allowance()]
        if not due:
            return
        await asyncio.gather(*(self._look_up(item, now) for item in due))
        self.publish(dict(self._names))

    def _allowance(self) -> int:
        if self.calls is None:
            return self.per_tick
        made = self.calls()
        allowed = int((made - self._calls_before) * self.share)
        self._calls_before = made
        return max(1, min(self.per_tick, allowed))

    async def _look_up(self, item: str, now: float) -> None:
        async with self._semaphore:
            try:
                found = await self.fetch(item)
            except LettaNotFound:
                self._checked[item] = now
                return
            except LettaError as exc:
                log.debug("%s %s name lookup failed: %s", self.what, item, exc)
                return
        self._checked[item] = now
        if found.name:
            self._names[item] = found.name
