"""REST routes of GlobalAlert and GlobalAlertTemplate: thin; validation in ``api.resources`` /
``evaluator.alerts``, persistence in ``api.store``, HTTP errors only here and in ``api.errors``."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import ObjectBody, Services, ServicesDep
from api.http import ApiError, render
from api.resources import (
    GLOBAL_ALERT,
    GLOBAL_ALERT_TEMPLATE,
    Kind,
    StoredObject,
    parse_object,
    render_list,
    render_object,
)
from api.schemas import (
    GlobalAlertListModel,
    GlobalAlertModel,
    GlobalAlertTemplateListModel,
    GlobalAlertTemplateModel,
    body_content,
    error_responses,
)
from api.store import NotFound
from evaluator.alerts import validate_name

MAX_LIMIT = 10_000
BAD_CONTINUE = "invalid continue token; pass metadata.continue of the previous page"


def _encode_continue(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> str:
    try:
        name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "BadRequest", BAD_CONTINUE) from exc
    if validate_name(name):
        raise ApiError(400, "BadRequest", BAD_CONTINUE)
    return name


def _render(services: Services, kind: Kind, objects: list[StoredObject]) -> list[dict[str, Any]]:
    statuses = services.stores[kind.kind].statuses([o.name for o in objects]) if not kind.template else {}
    return [render_object(kind, o, statuses.get(o.name)) for o in objects]


def resource_router(kind: Kind, item_model: type[BaseModel], list_model: type[BaseModel]) -> APIRouter:
    """The five operations on ``/{plural}`` for one kind."""
    router = APIRouter(prefix=f"/{kind.plural}", tags=[kind.kind])
    item: dict[int | str, dict[str, Any]] = {200: {"description": kind.kind, "content": body_content(item_model)}}
    body = {"requestBody": {"required": True, "content": body_content(item_model)}}

    @router.get(
        "",
        summary=f"List {kind.kind}s",
        response_class=Response,
        responses={200: {"description": kind.list_kind, "content": body_content(list_model)}, **error_responses(400)},
    )
    def list_objects(
        request: Request,
        services: ServicesDep,
        limit: Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="page size")] = None,
        continue_: Annotated[
            str | None, Query(alias="continue", max_length=400, description="token of the next page")
        ] = None,
    ) -> Response:
        store = services.stores[kind.kind]
        after = _decode_continue(continue_) if continue_ else None
        page, more = store.list_page(limit=limit, after=after)
        token = _encode_continue(page[-1][0].name) if more and page else None
        items = [render_object(kind, stored, status) for stored, status in page]
        data = render_list(kind, items, continue_token=token, resource_version=store.max_resource_version())
        return render(request, data)

    @router.post(
        "",
        summary=f"Create a {kind.kind}",
        status_code=201,
        response_class=Response,
        responses={201: item[200], **error_responses(400, 409, 413, 415, 422)},
        openapi_extra=body,
    )
    def create_object(request: Request, services: ServicesDep, raw: ObjectBody) -> Response:
        obj = parse_object(raw, kind=kind, catalog=services.catalog, flush_intervals=services.flush_intervals)
        stored = services.stores[kind.kind].create(obj=obj)
        return render(request, render_object(kind, stored), status_code=201, warnings=obj.warnings)

    @router.get(
        "/{name}",
        summary=f"Read a {kind.kind}",
        response_class=Response,
        responses={**item, **error_responses(404)},
    )
    def read_object(request: Request, services: ServicesDep, name: str) -> Response:
        found = services.stores[kind.kind].get_with_status(name) if not validate_name(name) else None
        if found is None:
            raise NotFound(kind, name)
        return render(request, render_object(kind, *found))

    @router.put(
        "/{name}",
        summary=f"Replace a {kind.kind}",
        response_class=Response,
        responses={**item, **error_responses(400, 404, 409, 413, 415, 422)},
        openapi_extra=body,
    )
    def replace_object(request: Request, services: ServicesDep, name: str, raw: ObjectBody) -> Response:
        obj = parse_object(
            raw, kind=kind, path_name=name, catalog=services.catalog, flush_intervals=services.flush_intervals
        )
        stored = services.stores[kind.kind].replace(obj=obj)
        return render(request, _render(services, kind, [stored])[0], warnings=obj.warnings)

    @router.delete(
        "/{name}",
        summary=f"Delete a {kind.kind}",
        response_class=Response,
        responses={**item, **error_responses(404)},
    )
    def delete_object(request: Request, services: ServicesDep, name: str) -> Response:
        stored = services.stores[kind.kind].delete(name) if not validate_name(name) else None
        if stored is None:
            raise NotFound(kind, name)
        return render(request, render_object(kind, stored))

    return router


global_alerts = resource_router(GLOBAL_ALERT, GlobalAlertModel, GlobalAlertListModel)
global_alert_templates = resource_router(GLOBAL_ALERT_TEMPLATE, GlobalAlertTemplateModel, GlobalAlertTemplateListModel)
