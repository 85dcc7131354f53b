"""``GET /events``: the events alerts wrote (the "Alerts page"), newest first, filtered and paged;
``POST /events/{id}/dismiss``: acknowledge one (who and when are kept; a second dismissal keeps the first)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import Services, ServicesDep
from api.http import ApiError, decode_body
from api.querytypes import QueryTime
from api.security import principal_name
from evaluator.engine.model import StoreError
from evaluator.events import Dismissal, Event, EventQuery

router = APIRouter(prefix="/events", tags=["events"])
MAX_LIMIT = 1_000
EVENT_ID = r"^[0-9a-f]{64}$"
MAX_BY = 253


def event_json(event: Event) -> dict[str, Any]:
    """An event as the API answers it: its stored form plus its ``id`` and ``dismissed`` (null while open)."""
    return {**event.to_json(), "id": event.id, "dismissed": event.dismissed.to_json() if event.dismissed else None}


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get("", summary="List events (filters: alert, severity, since, until, dismissed; paging: limit, offset)")
async def list_events(
    services: ServicesDep,
    alert: Annotated[str | None, Query(max_length=253)] = None,
    severity: Annotated[int | None, Query(ge=1, le=100)] = None,
    since: Annotated[QueryTime | None, Query(description="RFC 3339; events at or after")] = None,
    until: Annotated[QueryTime | None, Query(description="RFC 3339; events before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    dismissed: Annotated[bool | None, Query(description="true: only dismissed; false: only open")] = None,
) -> dict[str, Any]:
    since, until = _aware(since), _aware(until)
    if since is not None and until is not None and until <= since:
        raise ApiError(400, "BadRequest", f"until ({until.isoformat()}) must be after since ({since.isoformat()})")
    runtime = services.runtime
    query = EventQuery(
        alert=alert, severity=severity, since=since, until=until, limit=limit, offset=offset, dismissed=dismissed
    )
    try:
        page = await run_in_threadpool(runtime.events.search, query)
    except StoreError as exc:
        raise ApiError(503, "ServiceUnavailable", str(exc)) from exc
    body: dict[str, Any] = {
        "kind": "EventList",
        "items": [event_json(e) for e in page.items],
        "total": page.total,
        "limit": limit,
        "offset": offset,
    }
    if offset + len(page.items) < page.total:
        body["next"] = offset + len(page.items)
    return body


def dismiss_event(services: Services, event_id: str, by: str) -> Event | None:
    """Dismiss in SQL (the record of truth), then in the event index ``GET /events`` reads, if that is another."""
    runtime = services.runtime
    dismissal = Dismissal(by=by, at=datetime.now(UTC))
    event = runtime.sql_events.dismiss(event_id, dismissal)
    if event is None or runtime.events is runtime.sql_events:
        return event
    assert event.dismissed is not None  # the first dismissal, which the copy keeps too
    return runtime.events.dismiss(event_id, event.dismissed)


@router.post("/{event_id}/dismiss", summary="Dismiss (acknowledge) an event; optional body {by: NAME}")
async def dismiss(
    services: ServicesDep,
    request: Request,
    event_id: Annotated[str, Path(pattern=EVENT_ID, description="the event's id (GET /events items[].id)")],
) -> dict[str, Any]:
    body = await request.body()
    by = principal_name(request)
    if body.strip():
        decoded = decode_body(body, request.headers.get("content-type"))
        given = decoded.get("by") if isinstance(decoded, dict) else None
        if not isinstance(given, str) or not 0 < len(given.strip()) <= MAX_BY:
            raise ApiError(400, "BadRequest", f"body.by: expected a name of 1 to {MAX_BY} characters, got {given!r}")
        by = given.strip()
    try:
        event = await run_in_threadpool(dismiss_event, services, event_id, by)
    except StoreError as exc:
        raise ApiError(503, "ServiceUnavailable", str(exc)) from exc
    if event is None:
        raise ApiError(404, "NotFound", f"event {event_id} not found")
    return event_json(event)
