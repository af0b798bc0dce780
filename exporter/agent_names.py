"""Agent names for ``letta_agent_info``: looked up a few per poll, cached, refreshed hourly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaError, LettaNotFound
from exporter.letta.models import is_safe_id
from exporter.metrics import ExporterMetrics

log = logging.getLogger(__name__)


class AgentNames:
    def __init__(
        self,
        client: LettaClient,
        metrics: ExporterMetrics,
        *,
        refresh_every: float = 3600.0,
        per_tick: int = 20,
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.refresh_every = refresh_every
        self.per_tick = per_tick
        self.clock = clock
        self._names: dict[str, str] = {}
        self._checked: dict[str, float] = {}
        self._semaphore = asyncio.Semaphore(concurrency)

    async def refresh(self) -> None:
        now = self.clock()
        due = [
            agent_id
            for agent_id in self.metrics.agents.admitted
            if is_safe_id(agent_id) and now - self._checked.get(agent_id, float("-inf")) > self.refresh_every
        ][: self.per_tick]
        if not due:
            return
        await asyncio.gather(*(self._look_up(agent_id, now) for agent_id in due))
        self.metrics.set_agent_names(self._names)

    async def _look_up(self, agent_id: str, now: float) -> None:
        async with self._semaphore:
            try:
                agent = await self.client.retrieve_agent(agent_id)
            except LettaNotFound:
                self._checked[agent_id] = now
                return
            except LettaError as exc:
                log.debug("agent %s name lookup failed: %s", agent_id, exc)
                return
        self._checked[agent_id] = now
        if agent.name:
            self._names[agent_id] = agent.name
