"""``GET /events``: the events alerts wrote (the "Alerts page"), newest first, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import ServicesDep
from api.http import ApiError
from api.querytypes import QueryTime
from evaluator.engine.model import StoreError
from evaluator.events import EventQuery

router = APIRouter(prefix="/events", tags=["events"])
MAX_LIMIT = 1_000


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get("", summary="List events (filters: alert, severity, since, until; paging: limit, offset)")
async def list_events(
    services: ServicesDep,
    alert: Annotated[str | None, Query(max_length=253)] = None,
    severity: Annotated[int | None, Query(ge=1, le=100)] = None,
    since: Annotated[QueryTime | None, Query(description="RFC 3339; events at or after")] = None,
    until: Annotated[QueryTime | None, Query(description="RFC 3339; events before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    since, until = _aware(since), _aware(until)
    if since is not None and until is not None and until <= since:
        raise ApiError(400, "BadRequest", f"until ({until.isoformat()}) must be after since ({since.isoformat()})")
    runtime = services.runtime
    query = EventQuery(alert=alert, severity=severity, since=since, until=until, limit=limit, offset=offset)
    try:
        page = await run_in_threadpool(runtime.events.search, query)
    except StoreError as exc:
        raise ApiError(503, "ServiceUnavailable", str(exc)) from exc
    body: dict[str, Any] = {
        "kind": "EventList",
        "items": [e.to_json() for e in page.items],
        "total": page.total,
        "limit": limit,
        "offset": offset,
    }
    if offset + len(page.items) < page.total:
        body["next"] = offset + len(page.items)
    return body
