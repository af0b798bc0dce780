"""How fast to ask Letta: a request rate that adapts to what the server answers (AIMD).

The rate grows by a step each second while Letta answers without 429 and its latency holds, and
halves on a 429, between a floor and the configured ceiling: the same additive-increase,
multiplicative-decrease rule TCP uses to share a link, so the exporter finds the rate a server
(or a Letta Cloud plan) allows without being told, and backs off at once when it is wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

FLOOR = 1.0  # requests/s: even a throttled exporter keeps polling
INCREASE_EVERY = 1.0  # seconds between additive steps
STEPS_TO_CEILING = 40  # from the floor to the ceiling in about this many clean seconds
LATENCY_SLACK = 2.0  # "latency holds": the recent mean within this factor of the best seen
LATENCY_FLOOR = 0.005  # seconds: below this, jitter is noise, not load


class AdaptiveRateLimiter:
    """Spaces request starts ``1 / rate`` apart, shared by every concurrent task; ``ceiling <= 0``
    means no cap at all (and no adapting).

    A spacing limiter rather than a bucket with a burst: Letta Cloud counts requests per window,
    and a steady trickle is the polite shape.
    """

    def __init__(self, ceiling: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = max(0.0, ceiling)
        self.floor = min(FLOOR, self.ceiling)
        # Start at a quarter of the ceiling: high enough to catch up soon, low enough to be polite.
        self.rate = max(self.floor, self.ceiling / 4)
        self.step = max(0.5, (self.ceiling - self.floor) / STEPS_TO_CEILING)
        self.clock = clock
        self._next_start = 0.0
        self._lock = asyncio.Lock()
        self._last_change = clock()
        self._last_decrease = float("-inf")
        self._recent: float | None = None  # fast moving mean of latency
        self._best = float("inf")  # slow: the latency this server gives when unloaded
        self.throttled = 0  # 429 answers so far

    @property
    def capped(self) -> bool:
        return self.ceiling > 0

    @property
    def limit(self) -> float:
        """The rate in force, 0 when there is no cap."""
        return self.rate if self.capped else 0.0

    async def acquire(self) -> None:
        if not self.capped:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + 1.0 / self.rate
        if wait > 0:
            await asyncio.sleep(wait)

    def answered(self, seconds: float, *, throttled: bool) -> None:
        """Take in one HTTP answer: its latency, and whether it was a 429."""
        self.throttled += throttled
        if not self.capped:
            return
        now = self.clock()
        if throttled:
            # One halving per burst of 429s: the requests already in flight answer 429 too.
            if now - self._last_decrease >= 1.0 / self.rate + INCREASE_EVERY:
                self.rate = max(self.floor, self.rate / 2)
                self._last_decrease = now
            self._last_change = now
            return
        self._observe_latency(seconds)
        if now - self._last_change >= INCREASE_EVERY:
            if self._latency_holds():
                self.rate = min(self.ceiling, self.rate + self.step)
            self._last_change = now

    def _observe_latency(self, seconds: float) -> None:
        recent = seconds if self._recent is None else self._recent + 0.2 * (seconds - self._recent)
        self._recent = recent
        if recent < self._best:
            self._best = recent
        else:
            self._best += 0.001 * (recent - self._best)  # a server that got slower for good

    def _latency_holds(self) -> bool:
        return self._recent is None or self._recent <= LATENCY_SLACK * max(self._best, LATENCY_FLOOR)
