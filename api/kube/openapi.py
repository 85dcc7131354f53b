"""OpenAPI v3 of the group-version, as kube-apiserver publishes it under ``/openapi/v3``.

kubectl reads it for ``explain`` (schemas found by ``x-kubernetes-group-version-kind``) and, before
``apply``/``create``, to learn that the server validates fields itself: a PATCH operation of the kind
with a ``fieldValidation`` query parameter makes it send ``?fieldValidation=Strict`` instead of
validating against ``/openapi/v2``. No ``strategic-merge-patch`` body is offered, so ``kubectl apply``
sends a JSON merge patch. The object schemas are the CRDs' (``api.kube_controller.crds``), generated from
the one spec model.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.http import ApiError, dump_json
from api.kube.discovery import KUBERNETES_VERSION
from api.kube_controller.crds import object_schema
from api.resources import API_VERSION, GROUP, KINDS, VERSION, Kind
from api.schemas import AlertStatusModel
from evaluator.spec import GlobalAlertSpec, GlobalAlertTemplateSpec

GV_PATH = f"apis/{API_VERSION}"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
PATCH_TYPES = ("application/merge-patch+json", "application/json-patch+json")

router = APIRouter(tags=["kubernetes"], include_in_schema=False)


def schema_name(kind: str) -> str:
    return "org.projectcalico." + VERSION + "." + kind


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _gvk(kind: str) -> dict[str, str]:
    return {"group": GROUP, "version": VERSION, "kind": kind}


def _meta_schemas() -> dict[str, Any]:
    string_map = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
    return {
        f"{META}.ObjectMeta": {
            "description": "Standard object metadata; the server sets uid, resourceVersion, generation and "
            "creationTimestamp.",
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "DNS-1123 subdomain, unique per kind"},
                "uid": {"type": "string", "description": "server-set; a precondition when sent back"},
                "resourceVersion": {
                    "type": "string",
                    "description": "send back on update to guard against lost updates",
                },
                "generation": {"type": "integer", "format": "int64", "description": "grows when the spec changes"},
                "creationTimestamp": {"type": "string", "format": "date-time"},
                "labels": {**string_map, "description": "key/value pairs to select objects by"},
                "annotations": {**string_map, "description": "non-identifying metadata (256 KiB in total)"},
            },
        },
        f"{META}.ListMeta": {
            "type": "object",
            "properties": {"resourceVersion": {"type": "string"}, "continue": {"type": "string"}},
        },
        f"{META}.Status": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "status": {"type": "string"},
                "message": {"type": "string"},
                "reason": {"type": "string"},
                "code": {"type": "integer", "format": "int32"},
                "details": {"type": "object"},
            },
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Status"}],
        },
    }


def _object_schema(kind: Kind) -> dict[str, Any]:
    spec_model = GlobalAlertTemplateSpec if kind.template else GlobalAlertSpec
    schema = object_schema(spec_model, None if kind.template else AlertStatusModel)
    schema["properties"]["metadata"] = {"allOf": [_ref(f"{META}.ObjectMeta")], "default": {}}
    schema["properties"]["apiVersion"]["description"] = f"{API_VERSION}"
    schema["properties"]["kind"]["description"] = kind.kind
    schema["description"] = (
        "A query over flow, DNS or audit logs, run every period; results above the threshold become events."
        if not kind.template
        else "A GlobalAlert form whose <placeholder> values are filled in to make GlobalAlerts."
    )
    schema["x-kubernetes-group-version-kind"] = [_gvk(kind.kind)]
    return schema


def _list_schema(kind: Kind) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"allOf": [_ref(f"{META}.ListMeta")], "default": {}},
            "items": {"type": "array", "items": _ref(schema_name(kind.kind))},
        },
        "x-kubernetes-group-version-kind": [_gvk(kind.list_kind)],
    }


def _content(name: str, types: tuple[str, ...] = ("application/json", "application/yaml")) -> dict[str, Any]:
    return {media: {"schema": _ref(name)} for media in types}


def _operation(kind: Kind, action: str, verb: str, *, gvk_kind: str | None = None, **extra: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{action}{kind.kind}",
        "description": f"{verb} {kind.kind}",
        "tags": [API_VERSION],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(gvk_kind or kind.kind),
        "responses": {
            "200": {"description": "OK", "content": _content(schema_name(gvk_kind or kind.kind))},
            "401": {"description": "Unauthorized"},
        },
    }
    operation.update(extra)
    return operation


def _query(name: str, description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": schema_type}}


FIELD_VALIDATION = _query(
    "fieldValidation", "Strict (the default and the only behaviour): unknown or duplicate fields are refused"
)
FIELD_MANAGER = _query("fieldManager", "accepted for compatibility; not recorded")
DRY_RUN = _query("dryRun", "All: check and answer as for a real write, store nothing")


def _paths(kind: Kind) -> dict[str, Any]:
    collection = f"/{GV_PATH}/{kind.plural}"
    body = {"required": True, "content": _content(schema_name(kind.kind))}
    list_params = [
        _query("labelSelector", "select by labels"),
        _query("fieldSelector", "select by metadata.name"),
        _query("limit", "page size", "integer"),
        _query("continue", "token of the next page"),
        _query("resourceVersion", "watch from this version"),
        _query("watch", "stream changes as WatchEvents", "boolean"),
        _query("timeoutSeconds", "end a watch after this many seconds", "integer"),
    ]
    name = {"name": "name", "in": "path", "required": True, "description": f"name of the {kind.kind}",
            "schema": {"type": "string", "uniqueItems": True}}  # fmt: skip
    return {
        collection: {
            "get": _operation(kind, "list", "list or watch", gvk_kind=kind.list_kind, parameters=list_params),
            "post": _operation(
                kind, "post", "create a", requestBody=body, parameters=[FIELD_VALIDATION, FIELD_MANAGER, DRY_RUN]
            ),
        },
        f"{collection}/{{name}}": {
            "parameters": [name],
            "get": _operation(kind, "get", "read the specified"),
            "put": _operation(
                kind, "put", "replace the specified", requestBody=body,
                parameters=[FIELD_VALIDATION, FIELD_MANAGER, DRY_RUN],
            ),
            "patch": _operation(
                kind, "patch", "partially update the specified",
                requestBody={"required": True, "content": {t: {"schema": {"type": "object"}} for t in PATCH_TYPES}},
                parameters=[FIELD_VALIDATION, FIELD_MANAGER, DRY_RUN],
            ),
            "delete": _operation(kind, "delete", "delete the specified", parameters=[DRY_RUN]),
        },
    }  # fmt: skip


@cache
def group_version_document() -> bytes:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = _meta_schemas()
    for kind in KINDS:
        paths.update(_paths(kind))
        schemas[schema_name(kind.kind)] = _object_schema(kind)
        schemas[schema_name(kind.list_kind)] = _list_schema(kind)
    document = {
        "openapi": "3.0.0",
        "info": {"title": "policywatch", "version": f"v{KUBERNETES_VERSION['major']}.{KUBERNETES_VERSION['minor']}.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return dump_json(document)


def document_hash() -> str:
    return hashlib.sha512(group_version_document()).hexdigest()[:128].upper()


@router.get("/openapi/v3")
def openapi_v3_index() -> Response:
    index = {"paths": {GV_PATH: {"serverRelativeURL": f"/openapi/v3/{GV_PATH}?hash={document_hash()}"}}}
    return Response(json.dumps(index), media_type="application/json")


@router.get("/openapi/v3/{path:path}")
def openapi_v3_group_version(request: Request, path: str) -> Response:
    if path != GV_PATH:
        raise ApiError(404, "NotFound", f"no OpenAPI document for {path!r}; this server serves only {GV_PATH}")
    headers = {"Etag": f'"{document_hash()}"'}
    if "hash" in request.query_params:
        headers["Cache-Control"] = "public, immutable"
    return Response(group_version_document(), media_type="application/json", headers=headers)
