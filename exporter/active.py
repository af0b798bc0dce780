"""The runs in flight, read from wherever this Letta server lists them (docs/servers.md): the run
list's ``active=true`` filter, trusted only while it returns no finished run (Letta 0.11 ignores it);
then ``/v1/runs/active``; then the run list itself, down to the horizon, filtered here. What failed
is remembered as a missing endpoint (``list_runs_active`` for the filter) and probed again now and
then. A finished run in an answer is never taken for one in flight, whichever way it was read.
"""

from __future__ import annotations

import logging
from datetime import datetime

from exporter.letta.availability import EndpointAvailability
from exporter.letta.client import Endpoint, LettaClient
from exporter.letta.errors import LettaNotFound
from exporter.letta.models import Run

log = logging.getLogger(__name__)

FILTER = "list_runs_active"  # GET /v1/runs/?active=true
ROUTE = Endpoint.LIST_ACTIVE_RUNS  # GET /v1/runs/active
ROUTE_PAGE = 50  # Letta 0.11's /v1/runs/active stops there (its job list's default limit)
WITHOUT = {
    FILTER: "runs in flight read from /v1/runs/active, else from the run list",
    ROUTE: "runs in flight read from the run list, down to the discovery horizon",
}


class ActiveRuns:
    def __init__(
        self, client: LettaClient, availability: EndpointAvailability, *, page_size: int, max_pages: int
    ) -> None:
        self.client = client
        self.availability = availability
        self.page_size = page_size
        self.max_pages = max_pages

    async def read(self, horizon: float | None) -> list[Run]:
        """The runs in flight now (those created before ``horizon`` may be missing from the last
        resort, the filtered run list)."""
        availability = self.availability
        if not availability.is_missing(FILTER) or availability.may_probe(FILTER):
            runs = await self._filtered()
            if runs is not None:
                availability.answered(FILTER)
                return runs
            availability.missing(FILTER, "the run list ignores active=true: it listed finished runs")
        if await availability.claim(ROUTE):
            try:
                runs = await self.client.list_active_runs()
            except LettaNotFound as exc:
                if not exc.unknown_route:
                    raise
                availability.missing(ROUTE, "404 Not Found: no such route")
            except BaseException:
                availability.probe_failed(ROUTE)
                raise
            else:
                availability.answered(ROUTE)
                active = [run for run in runs if not run.is_terminal]
                if len(runs) < ROUTE_PAGE:
                    return active
                # 0.11 answers at most a page of its oldest runs in flight: the run list has the rest.
                seen = {run.id for run in active}
                return active + [run for run in await self._walk(horizon) if run.id not in seen]
        return await self._walk(horizon)

    async def _filtered(self) -> list[Run] | None:
        """The ``active=true`` list, or None once it shows a finished run (the filter is ignored)."""
        active: list[Run] = []
        pages = 0
        async for page in self.client.iter_runs(page_size=self.page_size, active=True):
            if any(run.is_terminal for run in page):
                return None
            active.extend(page)
            pages += 1
            if pages >= self.max_pages:
                log.warning("active runs exceed %d pages; tracking the newest only", pages)
                break
        return active

    async def _walk(self, horizon: float | None) -> list[Run]:
        """The run list itself, newest first down to ``horizon``, runs in flight kept."""
        active: list[Run] = []
        pages = 0
        async for page in self.client.iter_runs(page_size=self.page_size):
            active.extend(run for run in page if not run.is_terminal)
            pages += 1
            oldest = page[-1].created_at if page else None
            if pages >= self.max_pages or _below(oldest, horizon):
                break
        return active


def _below(created: datetime | None, horizon: float | None) -> bool:
    return horizon is not None and created is not None and created.timestamp() < horizon
