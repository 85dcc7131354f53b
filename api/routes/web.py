"""``GET /ui``: the Alerts page; ``/ui/signin``, ``/ui/signout``; ``POST /ui/events/{id}/dismiss``.

Server-rendered HTML (``api/web/render.py``). Data comes from the same code as ``GET /globalalerts`` (the object
store) and ``GET /events`` (the runtime's event store). Without credentials the page is the sign-in form, never a
JSON 401: a browser cannot send a bearer header, so the user pastes a token once and gets a signed cookie
session (``api/web/auth.py``). Form POSTs need a write role, the same origin and the session's CSRF token.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import Services, ServicesDep
from api.resources import GLOBAL_ALERT
from api.routes.events import EVENT_ID, dismiss_event
from api.security import token_role
from api.web import auth, render
from api.web.filters import Filters, parse_filters
from api.web.session import COOKIE, MAX_NAME
from evaluator.engine.model import StoreError
from evaluator.events import EventPage

router = APIRouter(tags=["web"], include_in_schema=False)
MAX_ALERTS = 500
NAME = re.compile(rf"^[^\x00-\x1f\x7f]{{1,{MAX_NAME}}}$")


def html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=render.HEADERS)


@dataclass(frozen=True, slots=True)
class PageData:
    alerts: list[render.Row]
    more_alerts: bool
    events: EventPage
    specs: dict[str, Mapping[str, Any]]  # of every alert shown or named by a shown event; absent: deleted


def _load(services: Services, filters: Filters) -> PageData:
    store = services.stores[GLOBAL_ALERT.kind]
    alerts, more = store.list_page(limit=MAX_ALERTS)
    specs: dict[str, Mapping[str, Any]] = {s.name: s.spec for s, _ in alerts}
    dataset_alerts = None
    if filters.dataset:
        every = store.list_page()[0] if more else alerts  # the filter sees all GlobalAlerts, not the first page
        dataset_alerts = tuple(s.name for s, _ in every if s.spec.get("dataSet") == filters.dataset)
    events = services.runtime.events.search(filters.event_query(dataset_alerts=dataset_alerts, now=datetime.now(UTC)))
    for name in {e.alert for e in events.items} - specs.keys():
        found = store.get(name)
        if found is not None:
            specs[name] = found.spec
    return PageData(alerts, more, events, specs)


def _signin(request: Request, services: Services, problem: str | None, status_code: int = 200) -> HTMLResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    page = render.signin_page(
        problem=problem, next_url=render.next_url(target), proxy_header=services.settings.trusted_proxy_header
    )
    response = html(page, status_code)
    if request.cookies.get(COOKIE):
        auth.clear_session_cookie(response, request, services.settings)
    return response


@router.get("/ui", response_class=HTMLResponse)
async def alerts_page(request: Request, services: ServicesDep) -> Response:
    resolution = auth.resolve(request, services.settings)
    if resolution.viewer is None:
        return _signin(request, services, resolution.problem)
    filters, errors = parse_filters(dict(request.query_params))
    if not errors and any(not value for _, value in request.query_params.multi_items()):
        return RedirectResponse(filters.url(), status_code=303)  # the form's empty fields: a short link to share
    try:
        data = await run_in_threadpool(_load, services, filters)
    except StoreError as exc:
        return html(render.message_page("store unavailable", str(exc)), 503)
    page = render.alerts_page(
        viewer=resolution.viewer,
        alerts=data.alerts,
        more_alerts=data.more_alerts,
        max_alerts=MAX_ALERTS,
        events=data.events,
        specs=data.specs,
        filters=filters,
        errors=errors,
        alertmanager_url=services.settings.alertmanager_url,
    )
    return html(page, 400 if errors else 200)


@router.get("/ui/signin", response_class=HTMLResponse)
async def signin_form(request: Request, services: ServicesDep) -> Response:
    page = render.signin_page(
        problem=None,
        next_url=render.next_url(request.query_params.get("next")),
        proxy_header=services.settings.trusted_proxy_header,
    )
    return html(page)


@router.post("/ui/signin", response_class=HTMLResponse)
async def signin(request: Request, services: ServicesDep) -> Response:
    settings = services.settings
    fields = await auth.form_fields(request)
    target = render.next_url(fields.get("next"))

    def again(problem: str, status_code: int) -> HTMLResponse:
        page = render.signin_page(problem=problem, next_url=target, proxy_header=settings.trusted_proxy_header)
        return html(page, status_code)

    if not auth.same_origin(request):
        return again("sign-in refused: the form was not sent from this server's page (Origin)", 403)
    if not settings.auth_enabled:
        return RedirectResponse(target, status_code=303)
    token = fields.get("token", "").strip()
    name = fields.get("name", "").strip()
    if not token:
        return again("token: paste a read or write token", 400)
    if name and not NAME.match(name):
        return again(f"name: at most {MAX_NAME} characters, no control characters", 400)
    if token_role(token, settings) is None:
        return again("that token is not one of this evaluator's read or write tokens", 401)
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookie(response, request, settings, token=token, user=name)
    return response


@router.post("/ui/signout", response_class=HTMLResponse)
async def signout(request: Request, services: ServicesDep) -> Response:
    if not auth.same_origin(request):
        return html(render.message_page("refused", "sign-out must come from this server's page (Origin)"), 403)
    response = RedirectResponse("/ui/signin", status_code=303)
    auth.clear_session_cookie(response, request, services.settings)
    return response


@router.post("/ui/events/{event_id}/dismiss", response_class=HTMLResponse)
async def dismiss(
    request: Request, services: ServicesDep, event_id: Annotated[str, Path(pattern=EVENT_ID)]
) -> Response:
    resolution = auth.resolve(request, services.settings)
    viewer = resolution.viewer
    if viewer is None:
        return _signin(request, services, resolution.problem or "sign in to dismiss events", 401)
    fields = await auth.form_fields(request)
    if viewer.csrf is not None:
        if not auth.same_origin(request) or not _csrf_ok(viewer, fields.get("csrf")):
            return html(render.message_page("refused", "cross-site request refused (Origin or CSRF token)"), 403)
    if not viewer.can_write:
        return html(render.message_page("read only", "dismissing an event needs a write token's sign-in"), 403)
    try:
        event = await run_in_threadpool(dismiss_event, services, event_id, viewer.name)
    except StoreError as exc:
        return html(render.message_page("store unavailable", str(exc)), 503)
    if event is None:
        return html(render.message_page("not found", f"event {event_id} not found"), 404)
    return RedirectResponse(render.next_url(fields.get("next")), status_code=303)


def _csrf_ok(viewer: auth.Viewer, given: str | None) -> bool:
    return given is not None and viewer.csrf is not None and hmac.compare_digest(given.encode(), viewer.csrf.encode())
