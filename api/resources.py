"""The two resource kinds as objects: decoding a submitted object (apiVersion, kind, metadata, spec) into
a validated ``ObjectIn``, and rendering stored objects and lists back.

Every problem of an object (envelope, metadata and spec) is reported together in one ``SpecInvalid``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from evaluator.alerts import DEFAULT_CATALOG as DEFAULT_QUERY_CATALOG
from evaluator.alerts import (
    DEFAULT_FLUSH_INTERVALS,
    AlertStatus,
    FieldError,
    GlobalAlertSpec,
    QueryCatalog,
    SpecInvalid,
    SpecWarning,
    validate_name,
    validate_spec,
)
from evaluator.events import rfc3339

GROUP = "projectcalico.org"
VERSION = "v3"
API_VERSION = f"{GROUP}/{VERSION}"
TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
# Server-owned metadata a client may echo back (e.g. `get -o yaml` then `apply`); ignored on write.
SERVER_METADATA = ("uid", "creationTimestamp", "generation", "selfLink", "managedFields", "namespace")
CLIENT_METADATA = ("name", "resourceVersion", "labels", "annotations")
_NAME_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_ANNOTATIONS_BYTES = 256 * 1024
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


@dataclass(frozen=True)
class Kind:
    """One resource kind and its names on the wire."""

    kind: str
    list_kind: str
    plural: str
    template: bool

    @property
    def singular(self) -> str:
        return self.kind.lower()


GLOBAL_ALERT = Kind("GlobalAlert", "GlobalAlertList", "globalalerts", template=False)
GLOBAL_ALERT_TEMPLATE = Kind("GlobalAlertTemplate", "GlobalAlertTemplateList", "globalalerttemplates", template=True)
KINDS = (GLOBAL_ALERT, GLOBAL_ALERT_TEMPLATE)


@dataclass(frozen=True)
class ObjectIn:
    """A submitted object after validation."""

    name: str
    resource_version: int | None
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: GlobalAlertSpec
    warnings: tuple[SpecWarning, ...]
    uid: str | None = None  # a precondition when sent: the incarnation the client read


@dataclass(frozen=True)
class StoredObject:
    """An object as the store keeps it; ``spec`` is the normalised spec mapping."""

    name: str
    uid: str
    resource_version: int
    generation: int
    created: datetime
    updated: datetime
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]


class ObjectInvalid(SpecInvalid):
    """``SpecInvalid`` of one object, knowing its kind and (when it has a valid one) its name."""

    def __init__(self, errors: list[FieldError], *, kind: Kind, name: str | None) -> None:
        super().__init__(errors)
        self.kind = kind
        self.name = name


def parse_object(
    raw: Any,
    *,
    kind: Kind,
    path_name: str | None = None,
    catalog: QueryCatalog = DEFAULT_QUERY_CATALOG,
    flush_intervals: Mapping[str, timedelta] = DEFAULT_FLUSH_INTERVALS,
) -> ObjectIn:
    """Validate a decoded object of ``kind``. ``path_name`` is the name in the URL of a PUT."""
    errors: list[FieldError] = []
    if not isinstance(raw, Mapping):
        raise ObjectInvalid(
            [FieldError("", _short(raw), f"expected a {kind.kind} object with apiVersion, kind, metadata and spec")],
            kind=kind,
            name=path_name,
        )
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            errors.append(FieldError(str(key), _short(raw[key]), f"unknown field; valid: {', '.join(TOP_LEVEL_KEYS)}"))
    api_version = raw.get("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        errors.append(FieldError("apiVersion", _short(api_version), f"must be {API_VERSION}"))
    raw_kind = raw.get("kind")
    if raw_kind is not None and raw_kind != kind.kind:
        errors.append(FieldError("kind", _short(raw_kind), f"must be {kind.kind} at /{kind.plural}"))
    metadata = raw.get("metadata")
    name: str | None = None
    resource_version: int | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        errors.append(FieldError("metadata", _short(metadata), "must be an object with at least name"))
        metadata = {}
    for key in metadata:
        if key not in CLIENT_METADATA and key not in SERVER_METADATA:
            errors.append(
                FieldError(
                    f"metadata.{key}", _short(metadata[key]), f"unknown field; valid: {', '.join(CLIENT_METADATA)}"
                )
            )
    raw_name = metadata.get("name", path_name)
    name_errors = validate_name(raw_name)
    errors.extend(name_errors)
    if not name_errors:
        name = str(raw_name)
        if path_name is not None and name != path_name:
            errors.append(FieldError("metadata.name", name, f"does not match the name in the URL ({path_name!r})"))
    resource_version = _resource_version(metadata.get("resourceVersion"), errors)
    uid = metadata.get("uid")
    if uid is not None and (not isinstance(uid, str) or not 0 < len(uid) <= 64):
        errors.append(FieldError("metadata.uid", _short(uid), "must be the uid string the server returned"))
        uid = None
    labels = _string_map("metadata.labels", metadata.get("labels"), errors, label=True)
    annotations = _string_map("metadata.annotations", metadata.get("annotations"), errors, label=False)
    spec: GlobalAlertSpec | None = None
    warnings: list[SpecWarning] = []
    try:
        spec, warnings = validate_spec(
            raw.get("spec"), template=kind.template, catalog=catalog, flush_intervals=flush_intervals
        )
    except SpecInvalid as exc:
        errors.extend(exc.errors)
    if errors or spec is None or name is None:
        raise ObjectInvalid(errors, kind=kind, name=name or path_name)
    return ObjectIn(
        name=name,
        resource_version=resource_version,
        labels=labels,
        annotations=annotations,
        spec=spec,
        warnings=tuple(warnings),
        uid=uid or None,
    )


def _resource_version(value: Any, errors: list[FieldError]) -> int | None:
    if value is None or value == "":
        return None
    digits = str(value)
    if isinstance(value, bool) or not isinstance(value, str | int) or not (digits.isascii() and digits.isdigit()):
        errors.append(
            FieldError(
                "metadata.resourceVersion", _short(value), "must be the resourceVersion string the server returned"
            )
        )
        return None
    number = int(value)
    if number > 2**62:
        errors.append(
            FieldError("metadata.resourceVersion", _short(value), "is not a resourceVersion this server issued")
        )
        return None
    return number


def _string_map(path: str, value: Any, errors: list[FieldError], *, label: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, _short(value), "must be a map of strings to strings"))
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        where = f"{path}.{key}"
        if not isinstance(item, str):
            errors.append(FieldError(where, _short(item), 'must be a string (quote numbers and booleans: "true")'))
            continue
        problem = _qualified_name_problem(str(key))
        if problem is not None:
            errors.append(
                FieldError(where, _short(key), f"invalid {'label' if label else 'annotation'} key: {problem}")
            )
            continue
        if label and (len(item) > 63 or not _LABEL_VALUE.fullmatch(item)):
            errors.append(FieldError(where, item, "invalid label value: at most 63 alphanumerics, '-', '_' or '.'"))
            continue
        out[str(key)] = item
    size = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
    if not label and size > MAX_ANNOTATIONS_BYTES:
        errors.append(
            FieldError(path, f"{size} bytes", f"annotations may total at most {MAX_ANNOTATIONS_BYTES} bytes (256 KiB)")
        )
    return out


def _qualified_name_problem(key: str) -> str | None:
    """Kubernetes' rule for label and annotation keys: ``[prefix/]name``, the name at most 63 characters of
    alphanumerics, '-', '_' and '.' (alphanumeric at both ends), the prefix a DNS subdomain of at most 253."""
    prefix, _, name = key.rpartition("/")
    if not _NAME_PART.fullmatch(name) or len(name) > 63:
        return "[prefix/]name: the name at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends"
    if "/" in key and (not _DNS_SUBDOMAIN.fullmatch(prefix) or len(prefix) > 253):
        return "the prefix before '/' must be a lower-case DNS subdomain of at most 253 characters"
    return None


def _short(value: Any) -> Any:
    """Echo a value back in an error, but never a huge one."""
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "..."
    if isinstance(value, Mapping | list):
        text = repr(value)
        return text if len(text) <= 200 else text[:200] + "..."
    return value


def render_object(kind: Kind, stored: StoredObject, status: AlertStatus | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": stored.name,
        "uid": stored.uid,
        "resourceVersion": str(stored.resource_version),
        "generation": stored.generation,
        "creationTimestamp": rfc3339(stored.created, timespec="seconds"),
    }
    if stored.labels:
        metadata["labels"] = dict(stored.labels)
    if stored.annotations:
        metadata["annotations"] = dict(stored.annotations)
    out: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind.kind, "metadata": metadata, "spec": stored.spec}
    if not kind.template:
        out["status"] = status.to_dict() if status is not None else dict(_NO_STATUS)
    return out


_NO_STATUS = AlertStatus().to_dict()


def render_list(
    kind: Kind, items: list[dict[str, Any]], *, continue_token: str | None, resource_version: int
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if continue_token:
        metadata["continue"] = continue_token
    return {"apiVersion": API_VERSION, "kind": kind.list_kind, "metadata": metadata, "items": items}
