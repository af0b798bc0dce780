"""The runs routes of Letta 0.11 (the jobs era): its router (the project's seed 003, Letta at commit
326f9a504) as a real 0.11.7 server answered (tests/fixtures/letta-real-0.11.7/).

The run list ignores every parameter it does not declare (``order``, ``statuses``, ``active``...),
lists newest first whatever is asked, reads cursors as absolute bounds and filters by agent and
background mode after the limit, on the metadata. There is no ``/metrics`` and no ``/trace`` route.
"""

from __future__ import annotations

from typing import Any

from exporter.simulator import shapes_011
from exporter.simulator.wire import Params, Response, json_response
from exporter.simulator.world import UnknownCursor, World


def runs(world: World, rest: list[str], params: Params) -> Response | None:
    """The answer to ``/v1/runs/<rest>``, or None where the router has no route."""
    match rest:
        case []:
            return list_runs(world, params)
        case ["active"]:
            return list_active(world, params)
        case [run_id]:
            body = world.get_run(run_id)
            return json_response(200, body) if body else json_response(404, shapes_011.RUN_NOT_FOUND)
        case [run_id, "usage"]:
            body = world.usage(run_id)
            return (
                json_response(200, body) if body else json_response(404, shapes_011.usage_not_found(run_id))
            )
        case [run_id, "steps"]:
            return steps(world, run_id, params)
    return None


def _kept(
    page: list[dict[str, Any]], agent_ids: list[str] | None, background: bool | None
) -> list[dict[str, Any]]:
    # The router filters the page it got, by what the metadata still says: a failed run's or a
    # background run's result has replaced its agent_id, and only streamed runs say "background".
    def keep(metadata: dict[str, Any]) -> bool:
        if agent_ids and metadata.get("agent_id") not in agent_ids:
            return False
        return background is None or ("background" in metadata and metadata["background"] == background)

    return [run for run in page if keep(run["metadata"])]


def list_runs(world: World, params: Params) -> Response:
    background = params.boolean("background", None)
    limit = params.integer("limit", 50)
    params.boolean("ascending", False)  # declared, validated, and not passed on
    if invalid := params.invalid():
        return invalid
    try:
        page = world.list_jobs(limit=limit, **params.cursors())
    except UnknownCursor as exc:
        return json_response(404, exc.body)
    return json_response(200, _kept(page, params.all("agent_ids"), background))


def list_active(world: World, params: Params) -> Response:
    background = params.boolean("background", None)
    if invalid := params.invalid():
        return invalid
    return json_response(200, _kept(world.list_active_jobs(), params.all("agent_ids"), background))


def steps(world: World, run_id: str, params: Params) -> Response:
    limit = params.integer("limit", 100)
    if invalid := params.invalid():
        return invalid
    order = params.last("order") or "desc"
    if order not in ("asc", "desc"):
        return json_response(400, {"detail": "Order must be 'asc' or 'desc'"})
    try:
        body = world.steps(
            run_id,
            descending=order == "desc",
            limit=limit,
            **params.cursors(),
        )
    except UnknownCursor as exc:
        return json_response(404, exc.body)
    # The step query filters by job ID without looking the job up: an unknown run has no steps.
    return json_response(200, body or [])
