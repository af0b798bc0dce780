"""The decoded bytes that replies being read may hold at once, process-wide (docs/architecture.md,
"Reading replies").

Each reply is capped on its own (``MAX_BODY_BYTES`` in the client), but the exporter reads up to a
dozen at once (enrichment workers, discovery, look-ups): a hostile server answering each with a gzip
bomb would have every one of them decode up to the cap together. The budget bounds their sum.

The reply that began first among those being read (the *eldest*) may grow to its own cap; all the
others share ``shared`` bytes between them, and one that would take more than is left waits until
there is room or it is the eldest itself. The total held is thus at most one cap plus ``shared``
(plus the piece each reader has inflated and not yet counted), however many replies decode, and
waiting is safe:

- no deadlock: the eldest never waits, and every reply ends (read whole, refused at its cap, or
  timed out by the client's whole-exchange timeout), whereupon the next in line is the eldest;
- no starvation: a reply that begins later never comes before one already being read, so a large
  valid reply waits at most for those that were being read when it began, however many small ones
  come and go meanwhile.

Valid replies are rarely held up: a page of 1,000 runs is about 2 MB, so the shared part is seldom
full unless something hostile is filling it. When it is, and the eldest is a reply trickling in,
the others wait for it, at worst until its whole-exchange timeout.
"""

from __future__ import annotations

import asyncio


class Hold:
    """What one reply holds; ``held`` is its decoded bytes so far."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = 0


class DecodeBudget:
    def __init__(self, shared: int) -> None:
        self.shared = shared
        self._holds: dict[Hold, None] = {}  # the replies being read, eldest first
        self._eldest: Hold | None = None
        self._shared_held = 0  # what all but the eldest hold
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def total(self) -> int:
        """Decoded bytes the replies being read hold now."""
        return sum(hold.held for hold in self._holds)

    def open(self) -> Hold:
        hold = Hold()
        self._holds[hold] = None
        if self._eldest is None:
            self._eldest = hold
        return hold

    def take(self, hold: Hold, size: int) -> bool:
        """Count ``size`` more bytes against ``hold`` if the budget has room for them now."""
        if hold is not self._eldest:
            if self._shared_held + size > self.shared:
                return False
            self._shared_held += size
        hold.held += size
        return True

    async def wait_for(self, hold: Hold, size: int) -> None:
        """Take ``size`` bytes for ``hold``, waiting as long as it takes (see the module's doc)."""
        while not self.take(hold, size):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def close(self, hold: Hold) -> None:
        """The reply is done with: its bytes are free again, and whoever waits looks again."""
        del self._holds[hold]
        if hold is self._eldest:
            # The next in line is the eldest now: what it holds no longer counts against the share.
            self._eldest = following = next(iter(self._holds), None)
            if following is not None:
                self._shared_held -= following.held
        else:
            self._shared_held -= hold.held
        hold.held = 0
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
