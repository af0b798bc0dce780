"""A circuit breaker for polls: when Letta keeps failing, stop hammering it.

It only decides; the poller says what happened, in one line per poll."""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter import defaults


class CircuitBreaker:
    """After ``threshold`` polls in a row that could not reach Letta, skip polls for a pause that
    doubles with each further failed probe (up to ``max_pause``); the first poll that reaches Letta
    closes it again. No restart is needed to recover."""

    def __init__(
        self,
        *,
        threshold: int = 3,
        base_pause: float = defaults.POLL_INTERVAL,
        max_pause: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_pause = base_pause
        self.max_pause = max_pause
        self.clock = clock
        self.failures = 0
        self.reopens_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.reopens_at is not None

    def allow(self) -> bool:
        """Whether a poll may run now; when open, a poll is let through as a probe once the pause ends."""
        return self.reopens_at is None or self.clock() >= self.reopens_at

    def poll_ended(self, reached: bool) -> float | None:
        """Take in a poll's result; the pause before the next poll when the breaker is (still) open."""
        if reached:
            self.failures = 0
            self.reopens_at = None
            return None
        self.failures += 1
        if self.failures < self.threshold:
            return None
        pause = min(self.max_pause, self.base_pause * 2 ** (self.failures - self.threshold))
        self.reopens_at = self.clock() + pause
        return pause
