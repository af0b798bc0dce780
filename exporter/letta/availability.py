"""Which optional endpoints this Letta server serves, learnt from its answers (docs/servers.md has
which generation lacks what). An endpoint a server answers as lacking it is *missing*: that is said
once in the log with what it costs, shown as ``letta_exporter_endpoint_available{endpoint} 0``, it
is not asked per run any more, and one caller probes it again every ``probe_interval`` seconds,
since servers get upgraded. Until an endpoint has answered once, one caller asks and the others
wait for that answer, so a missing endpoint costs one request, not one per enrichment worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class _Endpoint:
    available: bool | None = None  # None: not answered yet
    asking: asyncio.Event | None = None  # the first read under way; set when it ends
    next_probe: float = 0.0
    reason: str = ""


@dataclass
class EndpointAvailability:
    probe_interval: float
    # What losing an endpoint costs, in words for the log ("tool counts: none; ...").
    costs: Callable[[str], str] = lambda endpoint: ""
    # Told of every change: (endpoint, available), for letta_exporter_endpoint_available.
    on_change: Callable[[str, bool], None] = lambda endpoint, available: None
    clock: Callable[[], float] = time.monotonic
    _endpoints: dict[str, _Endpoint] = field(default_factory=dict)

    def _get(self, endpoint: str) -> _Endpoint:
        state = self._endpoints.get(endpoint)
        if state is None:
            state = self._endpoints[endpoint] = _Endpoint()
        return state

    async def claim(self, endpoint: str) -> bool:
        """May the caller read ``endpoint`` now? Until it has answered once, one caller asks and the
        others wait for that read to end; while it is missing, one caller per interval may: the
        probe. Nothing is awaited between a check and its claim, so two callers cannot both probe."""
        state = self._get(endpoint)
        while state.available is None:
            if state.asking is None:
                state.asking = asyncio.Event()
                return True
            await state.asking.wait()
        return self.may_probe(endpoint) if not state.available else True

    def may_probe(self, endpoint: str) -> bool:
        """For a missing endpoint: whether a probe is due now (and if so, the caller makes it)."""
        if not self.probe_due(endpoint):
            return False
        self._get(endpoint).next_probe = self.clock() + self.probe_interval
        return True

    def probe_due(self, endpoint: str) -> bool:
        return self.clock() >= self._get(endpoint).next_probe

    def is_missing(self, endpoint: str) -> bool:
        return self._get(endpoint).available is False

    def missing(self, endpoint: str, reason: str) -> None:
        """The server lacks ``endpoint`` (an unknown route, 501, a list it cannot serve). Said when it
        starts, not at every probe after."""
        state = self._get(endpoint)
        self._asked(state)
        state.next_probe = self.clock() + self.probe_interval
        if state.available is False:
            return
        state.available, state.reason = False, reason
        cost = self.costs(endpoint)
        log.warning(
            "Letta does not serve %s (%s); not asking for it, probing again every %.0fs%s",
            endpoint, reason, self.probe_interval, f"; meanwhile {cost}" if cost else "",
        )  # fmt: skip
        self.on_change(endpoint, False)

    def answered(self, endpoint: str) -> None:
        """``endpoint`` answered as an endpoint that exists (data, or a 404 naming what it lacks)."""
        state = self._get(endpoint)
        self._asked(state)
        if state.available is True:
            return
        if state.available is False:
            log.warning("Letta serves %s again; reading it", endpoint)
        state.available = True
        self.on_change(endpoint, True)

    def probe_failed(self, endpoint: str) -> None:
        """A transient error says nothing about the endpoint: the next caller may ask again."""
        state = self._get(endpoint)
        self._asked(state)
        if state.available is False:
            state.next_probe = self.clock()

    @staticmethod
    def _asked(state: _Endpoint) -> None:
        if state.asking is not None:
            state.asking.set()
            state.asking = None
