"""A global cap on requests per second to Letta, shared by every concurrent task."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart; ``rate <= 0`` means no cap.

    A plain spacing limiter rather than a bucket with a burst: Letta Cloud counts requests per
    window, and a steady trickle is the polite shape.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.interval == 0.0:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)
