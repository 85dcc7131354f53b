"""``GET /ui``: the Alerts page, a read-only HTML view of the GlobalAlerts (with status) and the newest events.

Server-rendered, no JavaScript; every value from the database goes through ``html.escape``. Data comes from the
same code as ``GET /globalalerts`` (the object store) and ``GET /events`` (the runtime's event store), and the
app-wide bearer-token check applies as to any other read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from api.deps import Services, ServicesDep
from api.http import ApiError
from api.resources import GLOBAL_ALERT, StoredObject
from evaluator.alerts import AlertStatus
from evaluator.engine.model import StoreError
from evaluator.events import Event, EventPage, EventQuery, rfc3339

router = APIRouter(tags=["web"])
MAX_ALERTS = 500
EVENTS_SHOWN = 100
ALERT_HEADERS = (
    *("name", "dataSet", "severity", "period", "active", "healthy", "executionState"),
    *("lastExecuted", "lastEvent", "newest error"),
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } tr.selected td { background: #fff6d5; }
.bad { color: #b00020; font-weight: 600; } .good { color: #1b7f3b; } .muted { color: #777; }
"""

# A new alert has no status row until the scheduler first runs it: not a failure, so not shown in red.
NOT_RUN = '<span class="muted">not run yet</span>'
Row = tuple[StoredObject, AlertStatus | None]


def _text(value: object) -> str:
    return escape("" if value is None else str(value))


def _time(value: datetime | None) -> str:
    return _text(rfc3339(value)) if value is not None else '<span class="muted">-</span>'


def _flag(value: bool, good: str, bad: str) -> str:
    return f'<span class="good">{good}</span>' if value else f'<span class="bad">{bad}</span>'


def _filter_link(name: str) -> str:
    return f'<a href="/ui?{escape(urlencode({"alert": name}))}">{_text(name)}</a>'


def _alert_row(stored: StoredObject, status: AlertStatus | None, selected: bool) -> str:
    spec: dict[str, Any] = stored.spec
    never_run = status is None
    status = status or AlertStatus()
    newest_error = status.errorConditions[-1] if status.errorConditions else None
    error = f"{_text(newest_error.type)}: {_text(newest_error.message)}" if newest_error else ""
    cells = [
        _filter_link(stored.name),
        _text(spec.get("dataSet")),
        _text(spec.get("severity")),
        _text(spec.get("period")),
        NOT_RUN if never_run else _flag(status.active, "active", "inactive"),
        NOT_RUN if never_run else _flag(status.healthy, "healthy", "unhealthy"),
        _text(status.executionState),
        _time(status.lastExecuted),
        _time(status.lastEvent),
        error,
    ]
    row_class = ' class="selected"' if selected else ""
    return f"<tr{row_class}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _event_row(event: Event) -> str:
    cells = [_time(event.time), _filter_link(event.alert), _text(event.severity), _text(event.description)]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _table(headers: Iterable[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_page(*, alerts: list[Row], more_alerts: bool, events: EventPage, alert: str | None) -> str:
    alert_rows = [_alert_row(stored, status, stored.name == alert) for stored, status in alerts]
    alerts_html = _table(ALERT_HEADERS, alert_rows, "No GlobalAlerts.")
    if more_alerts:
        alerts_html += f'<p class="muted">Only the first {MAX_ALERTS} GlobalAlerts (by name) are shown.</p>'
    if alert is None:
        events_title = f"Newest events ({len(events.items)} of {events.total})"
    else:
        events_title = f"Newest events of {_text(alert)} ({len(events.items)} of {events.total}) "
        events_title += '<a href="/ui">show all</a>'
    event_rows = [_event_row(e) for e in events.items]
    events_html = _table(("time", "alert", "severity", "description"), event_rows, "No events.")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>policywatch: Alerts</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>policywatch: Alerts</h1>"
        f'<h2>GlobalAlerts</h2><div id="alerts">{alerts_html}</div>'
        f'<h2>{events_title}</h2><div id="events">{events_html}</div>'
        "</body></html>\n"
    )


def _load(services: Services, alert: str | None) -> tuple[list[Row], bool, EventPage]:
    alerts, more = services.stores[GLOBAL_ALERT.kind].list_page(limit=MAX_ALERTS)
    events = services.runtime.events.search(EventQuery(alert=alert, limit=EVENTS_SHOWN))
    return alerts, more, events


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
async def alerts_page(
    services: ServicesDep,
    alert: Annotated[str | None, Query(max_length=253)] = None,
) -> HTMLResponse:
    alert = alert or None
    try:
        alerts, more, events = await run_in_threadpool(_load, services, alert)
    except StoreError as exc:
        raise ApiError(503, "ServiceUnavailable", str(exc)) from exc
    return HTMLResponse(render_page(alerts=alerts, more_alerts=more, events=events, alert=alert))
