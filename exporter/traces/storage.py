"""Whether Letta can answer ``/trace`` at all.

A server without trace storage (ClickHouse; the self-hosted default) answers 501 for every run. After
the first 501 the exporter stops asking per run, says so once, and lets one run probe again every
``probe_interval`` seconds; the first probe that gets an answer turns per-run reads back on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_PROBE_INTERVAL = 600.0


class TraceStorage:
    def __init__(
        self, probe_interval: float = DEFAULT_PROBE_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.probe_interval = probe_interval
        self.clock = clock
        self.available = True
        self._next_probe = 0.0

    def claim(self) -> bool:
        """May this run read ``/trace`` now? While storage is unavailable, one caller per interval
        gets ``True``: it is the probe. Synchronous, so concurrent enrichments cannot both claim."""
        if self.available:
            return True
        now = self.clock()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.probe_interval
        return True

    def unavailable(self, detail: str = "") -> None:
        """A 501: no trace storage. Logged when it starts, not for every probe after."""
        if self.available:
            log.warning(
                "Letta has no trace storage (/trace answered 501%s); not asking per run, probing "
                "every %.0fs; runs get synthesised traces meanwhile",
                f": {detail}" if detail else "", self.probe_interval,
            )  # fmt: skip
            self.available = False
        self._next_probe = self.clock() + self.probe_interval

    def answered(self) -> None:
        """``/trace`` answered: storage is there (again)."""
        if not self.available:
            log.info("Letta's /trace answers again; reading each run's trace")
        self.available = True

    def probe_failed(self) -> None:
        """The probe met a transient error, which says nothing about storage: probe again soon."""
        if not self.available:
            self._next_probe = self.clock()
