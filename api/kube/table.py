"""``metav1.Table`` output, which kubectl asks for with ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``:
the CRDs' printer columns (NAME, DATASET, SEVERITY, PERIOD, HEALTHY, LAST EXECUTED, AGE), dates shown as ages the
way kube-apiserver formats them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request

from api.http import ApiError
from api.kube_controller.crds import PRINTER_COLUMNS
from api.resources import Kind

TABLE_API_VERSION = "meta.k8s.io/v1"
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT = ("None", "Metadata", "Object")
_DESCRIPTION = "Custom resource definition column (in JSONPath format): "  # as kube-apiserver describes the CRDs'


def wants_table(request: Request) -> bool:
    """True when Accept names ``as=Table`` of ``meta.k8s.io`` (kubectl lists it before plain JSON)."""
    for part in request.headers.get("accept", "").split(","):
        params = dict(_param(p) for p in part.split(";")[1:])
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in TABLE_VERSIONS:
            return True
    return False


def _param(text: str) -> tuple[str, str]:
    key, _, value = text.strip().partition("=")
    return key.strip(), value.strip()


def include_object(request: Request) -> str:
    value = request.query_params.get("includeObject", "Metadata")
    if value not in INCLUDE_OBJECT:
        raise ApiError(400, "BadRequest", f"includeObject={value!r}: must be one of {', '.join(INCLUDE_OBJECT)}")
    return value


def _printer_columns(kind: Kind) -> list[dict[str, str]]:
    """The CRD's columns of the kind (a template has no status)."""
    return [c for c in PRINTER_COLUMNS if not (kind.template and c["jsonPath"].startswith(".status"))]


def columns(kind: Kind) -> list[dict[str, Any]]:
    name = {"name": "Name", "type": "string", "format": "name", "description": "metadata.name", "priority": 0}
    return [name] + [
        {"name": c["name"], "type": c["type"], "format": "", "description": _DESCRIPTION + c["jsonPath"], "priority": 0}
        for c in _printer_columns(kind)
    ]


def human_duration(age: timedelta) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``."""
    seconds = int(age.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m" if seconds % 60 == 0 else f"{minutes}m{seconds % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, hours // 24 % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def _lookup(obj: dict[str, Any], json_path: str) -> Any:
    node: Any = obj
    for key in json_path.strip(".").split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _cell(value: Any, column_type: str, now: datetime) -> Any:
    if value is None:
        return None
    if column_type == "date" and isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return human_duration(now - (when if when.tzinfo else when.replace(tzinfo=UTC)))
    return value


def row(kind: Kind, obj: dict[str, Any], include: str, now: datetime) -> dict[str, Any]:
    cells = [obj["metadata"]["name"]] + [
        _cell(_lookup(obj, c["jsonPath"]), c["type"], now) for c in _printer_columns(kind)
    ]
    out: dict[str, Any] = {"cells": cells}
    if include == "Object":
        out["object"] = obj
    elif include == "Metadata":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION, "metadata": obj["metadata"]}
    return out


def table(
    kind: Kind,
    objects: list[dict[str, Any]],
    *,
    include: str = "Metadata",
    resource_version: str | None = None,
    continue_token: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    metadata: dict[str, Any] = {}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": columns(kind),
        "rows": [row(kind, o, include, now) for o in objects],
    }
