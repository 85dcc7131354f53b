"""REST routes of GlobalAlert and GlobalAlertTemplate: thin; validation in ``api.resources`` /
``evaluator.alerts``, persistence in ``api.store``, HTTP errors only here and in ``api.errors``.

The same routes are the Kubernetes API of the kinds (``api.kube``): Table output for kubectl, label and
field selectors, ``?watch=true``, PATCH (merge and JSON patch), DeleteOptions preconditions."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import ObjectBody, Services, ServicesDep
from api.http import ApiError, decode_body, render
from api.kube import patch as patches
from api.kube import table, watch
from api.kube.selectors import selector
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
from api.store import Conflict, NotFound
from evaluator.alerts import validate_name

MAX_LIMIT = 10_000
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
PATCH_RETRIES = 5
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


def _dry_run(values: list[str]) -> bool:
    """``dryRun=All`` (the only value Kubernetes defines): run the write, checks included, store nothing."""
    if any(v != "All" for v in values):
        raise ApiError(400, "BadRequest", f"dryRun={values[0] if values else ''!r}: the only dry run is dryRun=All")
    return bool(values)


def _write_options(request: Request) -> bool:
    """Query parameters kubectl sends on writes: ``fieldValidation`` (every value validates strictly:
    unknown fields are always refused), ``fieldManager`` (accepted, not recorded); whether it is a dry run."""
    params = request.query_params
    validation = params.get("fieldValidation")
    if validation is not None and validation not in FIELD_VALIDATION:
        raise ApiError(
            400, "BadRequest", f"fieldValidation={validation!r}: must be one of {', '.join(FIELD_VALIDATION)}"
        )
    return _dry_run(params.getlist("dryRun"))


def _output(request: Request, kind: Kind, objects: list[dict[str, Any]], **list_meta: Any) -> dict[str, Any] | None:
    """The Table for ``objects`` when the client asked for one (kubectl get), else None."""
    if not table.wants_table(request):
        return None
    return table.table(kind, objects, include=table.include_object(request), **list_meta)


def _delete_options(raw: bytes, content_type: str | None) -> tuple[int | None, str | None, bool]:
    """``DeleteOptions.preconditions`` (resourceVersion, uid) of a DELETE body, if any, and its ``dryRun``."""
    if not raw.strip():
        return None, None, False
    options = decode_body(raw, content_type)
    if not isinstance(options, dict):
        raise ApiError(400, "BadRequest", "a DELETE body must be DeleteOptions (an object)")
    dry_run = options.get("dryRun") or []
    if not isinstance(dry_run, list) or not all(isinstance(v, str) for v in dry_run):
        raise ApiError(400, "BadRequest", 'DeleteOptions.dryRun must be a list: ["All"]')
    preconditions = options.get("preconditions") or {}
    if not isinstance(preconditions, dict):
        raise ApiError(400, "BadRequest", "DeleteOptions.preconditions must be an object {uid, resourceVersion}")
    version, uid = preconditions.get("resourceVersion"), preconditions.get("uid")
    if version is not None and not (isinstance(version, str) and version.isascii() and version.isdigit()):
        raise ApiError(400, "BadRequest", "preconditions.resourceVersion must be the string the server returned")
    if uid is not None and not isinstance(uid, str):
        raise ApiError(400, "BadRequest", "preconditions.uid must be the uid string the server returned")
    if version is not None:  # a version this server never issued fails the precondition, never passes it
        return (int(version) if len(version) < 19 else -1), uid, _dry_run(dry_run)
    return None, uid, _dry_run(dry_run)


async def _read_patch_body(request: Request) -> Any:
    """The patch document; its Content-Type (the patch type) is checked before the body is decoded."""
    content_type = request.headers.get("content-type")
    patches.patch_type(content_type)
    return decode_body(await request.body(), content_type)


PatchBody = Annotated[Any, Depends(_read_patch_body)]


def resource_router(kind: Kind, item_model: type[BaseModel], list_model: type[BaseModel]) -> APIRouter:
    """List (and watch), create, read, replace, patch and delete on ``/{plural}`` for one kind."""
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
        label_selector: Annotated[
            str | None, Query(alias="labelSelector", max_length=4096, description="e.g. team=net,tier in (a,b)")
        ] = None,
        field_selector: Annotated[
            str | None, Query(alias="fieldSelector", max_length=400, description="metadata.name=NAME")
        ] = None,
        # watch parameters: documented in the Kubernetes OpenAPI (/openapi/v3), not in /openapi.json, whose
        # clients (and fuzzers) expect an answer that ends
        watch_: Annotated[bool, Query(alias="watch", include_in_schema=False)] = False,
        resource_version: Annotated[
            str | None, Query(alias="resourceVersion", max_length=40, include_in_schema=False)
        ] = None,
        timeout_seconds: Annotated[int | None, Query(alias="timeoutSeconds", ge=0, include_in_schema=False)] = None,
        bookmarks: Annotated[bool, Query(alias="allowWatchBookmarks", include_in_schema=False)] = False,
    ) -> Response:
        store = services.stores[kind.kind]
        match = selector(label_selector, field_selector)
        include = table.include_object(request) if table.wants_table(request) else None
        if watch_:
            opts = watch.options(
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                bookmarks=bookmarks,
                match=match,
                table_include=include,
            )
            return watch.watch_response(request, store, kind, opts)
        after = _decode_continue(continue_) if continue_ else None
        version = store.max_resource_version()  # before the read: a later change is never hidden by it
        if match is None:
            page, more = store.list_page(limit=limit, after=after)
            items = [render_object(kind, stored, status) for stored, status in page]
        else:
            everything, _ = store.list_page(after=after)
            matching = [o for o in (render_object(kind, *found) for found in everything) if match(o)]
            items, more = matching[:limit], limit is not None and len(matching) > limit
        token = _encode_continue(items[-1]["metadata"]["name"]) if more and items else None
        shown = _output(request, kind, items, resource_version=str(version), continue_token=token)
        data = shown or render_list(kind, items, continue_token=token, resource_version=version)
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
        dry_run = _write_options(request)
        obj = parse_object(raw, kind=kind, catalog=services.catalog, flush_intervals=services.flush_intervals)
        stored = services.stores[kind.kind].create(obj=obj, dry_run=dry_run)
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
        obj = render_object(kind, *found)
        return render(
            request, _output(request, kind, [obj], resource_version=obj["metadata"]["resourceVersion"]) or obj
        )

    @router.put(
        "/{name}",
        summary=f"Replace a {kind.kind}",
        response_class=Response,
        responses={**item, **error_responses(400, 404, 409, 413, 415, 422)},
        openapi_extra=body,
    )
    def replace_object(request: Request, services: ServicesDep, name: str, raw: ObjectBody) -> Response:
        dry_run = _write_options(request)
        obj = parse_object(
            raw, kind=kind, path_name=name, catalog=services.catalog, flush_intervals=services.flush_intervals
        )
        stored = services.stores[kind.kind].replace(obj=obj, dry_run=dry_run)
        return render(request, _render(services, kind, [stored])[0], warnings=obj.warnings)

    @router.patch(
        "/{name}",
        summary=f"Patch a {kind.kind} (JSON merge patch or JSON patch)",
        response_class=Response,
        responses={**item, **error_responses(400, 404, 409, 413, 415, 422)},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {t: {"schema": {"type": "object"}} for t in patches.PATCH_TYPES},
            }
        },
    )
    def patch_object(request: Request, services: ServicesDep, name: str, raw: PatchBody) -> Response:
        dry_run = _write_options(request)
        patch_type = patches.patch_type(request.headers.get("content-type"))
        store = services.stores[kind.kind]
        for attempt in range(PATCH_RETRIES):
            found = store.get_with_status(name) if not validate_name(name) else None
            if found is None:
                raise NotFound(kind, name)
            current = render_object(kind, *found)
            if patch_type == patches.MERGE_PATCH:
                patched = patches.merge_patch(current, raw)
            else:
                patched = patches.json_patch(current, raw)
            metadata = patched.get("metadata") if isinstance(patched, dict) else None
            pinned = (
                isinstance(metadata, dict) and metadata.get("resourceVersion") != current["metadata"]["resourceVersion"]
            )
            obj = parse_object(
                patched, kind=kind, path_name=name, catalog=services.catalog, flush_intervals=services.flush_intervals
            )
            try:
                stored = store.replace(obj=obj, dry_run=dry_run)
            except Conflict:
                # a version the patch itself names is the client's precondition; else the object moved
                # between our read and write: patch the newer object, as kube-apiserver does
                if pinned or attempt == PATCH_RETRIES - 1:
                    raise
                continue
            return render(request, _render(services, kind, [stored])[0], warnings=obj.warnings)
        raise AssertionError("unreachable")

    @router.delete(
        "/{name}",
        summary=f"Delete a {kind.kind}",
        response_class=Response,
        responses={**item, **error_responses(404, 409)},
    )
    async def delete_object(request: Request, services: ServicesDep, name: str) -> Response:
        dry_run = _dry_run(request.query_params.getlist("dryRun"))
        version, uid, dry_body = _delete_options(await request.body(), request.headers.get("content-type"))
        store = services.stores[kind.kind]
        stored = (
            await run_in_threadpool(
                lambda: store.delete(name, resource_version=version, uid=uid, dry_run=dry_run or dry_body)
            )
            if not validate_name(name)
            else None
        )
        if stored is None:
            raise NotFound(kind, name)
        return render(request, render_object(kind, stored))

    return router


global_alerts = resource_router(GLOBAL_ALERT, GlobalAlertModel, GlobalAlertListModel)
global_alert_templates = resource_router(GLOBAL_ALERT_TEMPLATE, GlobalAlertTemplateModel, GlobalAlertTemplateListModel)
