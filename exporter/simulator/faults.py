"""Fault injection: what a gateway or an overloaded Letta does to a request before it is answered."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class Faults:
    """Per-request fault probabilities. Mutable on purpose: tests flip them while the server runs."""

    rate_429: float = 0.0
    retry_after: float = 0.1
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_malformed: float = 0.0
    rate_slow: float = 0.0
    slow_seconds: float = 0.5
    # A server-side rate limit, requests per second over a one-second window (0: none), answered
    # 429 with Retry-After in whole seconds, as an API gateway does.
    rate_limit: float = 0.0


class FaultPicker:
    """Draws at most one fault per request from its own seeded RNG, so faults do not disturb the
    world's random stream (and therefore the runs a seed produces)."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(f"faults-{seed}")
        self._lock = threading.Lock()
        self._window: deque[float] = deque()  # request starts within the last second

    def over_limit(self) -> int | None:
        """Seconds to wait when this request is over the rate limit, else None (the request counts)."""
        limit = self.faults.rate_limit
        if limit <= 0:
            return None
        with self._lock:
            now = time.monotonic()
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if len(self._window) >= limit:
                return max(1, math.ceil(self._window[0] + 1.0 - now))
            self._window.append(now)
            return None

    def pick(self) -> str | None:
        f = self.faults
        # Read each field once: another thread may change them mid-draw.
        table = (
            ("429", f.rate_429),
            ("500", f.rate_500),
            ("502", f.rate_502),
            ("malformed", f.rate_malformed),
            ("slow", f.rate_slow),
        )
        if not any(rate > 0 for _, rate in table):
            return None
        with self._lock:
            draw = self._rng.random()
        threshold = 0.0
        for name, rate in table:
            threshold += max(0.0, rate)
            if draw < threshold:
                return name
        return None


BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def truncate(body: bytes) -> bytes:
    """A strict prefix of a JSON object or array is never valid JSON, which is the point."""
    if len(body) < 2:
        return b"{"
    return body[: len(body) // 2]
