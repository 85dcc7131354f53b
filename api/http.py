"""HTTP helpers of the API layer: body decoding (JSON or YAML), content negotiation (JSON, or YAML when
Accept asks), and the one error shape every failure uses (a Kubernetes-like ``Status``)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from api.yamlio import DecodeError, decode_text, dump_yaml, load_json, load_yaml_documents
from evaluator.alerts import FieldError, SpecWarning

JSON_TYPE = "application/json"
YAML_TYPE = "application/yaml"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
RETRY_AFTER_S = 5  # seconds a client is asked to wait after a 503 (the database busy or away)
# What drivers put in their messages about the server: never shown to clients (logged instead).
_DB_DETAILS = re.compile(
    r"""(?:server\s+at\s+"[^"]*"(?:\s*\([^)]*\))?|port\s+\d+|(?:user|role|database)\s+"[^"]*"|"""
    r"""(?:host|hostaddr|user|dbname|port)=\S+|postgres(?:ql)?(?:\+\w+)?://\S+)""",
    re.IGNORECASE,
)


class ApiError(Exception):
    """An HTTP error with a reason word (NotFound, Invalid, ...) and optional per-field causes."""

    def __init__(
        self,
        status_code: int,
        reason: str,
        message: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if status_code == 503:
            # A 503 is always "retry later", and its cause's text (a driver's message) may name the database.
            message = redact_db_details(message)
            headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}


def redact_db_details(message: str) -> str:
    """``message`` without database hosts, ports, users and URLs (``connection to server at "db" ... user "x"``)."""
    return _DB_DETAILS.sub("[redacted]", message)


def status_body(status_code: int, reason: str, message: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": status_code,
        "reason": reason,
        "message": message,
    }
    if errors:
        body["errors"] = [e.to_dict() for e in errors]
    return body


def wants_yaml(request: Request) -> bool:
    """True when the Accept header prefers a YAML type over JSON (q-values honoured)."""
    accept = request.headers.get("accept", "")
    best_yaml = best_json = -1.0
    for index, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        quality = 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        score = quality - index * 1e-6  # earlier wins ties
        if media in YAML_TYPES:
            best_yaml = max(best_yaml, score)
        elif media in (JSON_TYPE, "application/*", "*/*"):
            best_json = max(best_json, score)
    return best_yaml > 0 and best_yaml > best_json


def render(
    request: Request,
    data: Any,
    *,
    status_code: int = 200,
    warnings: tuple[SpecWarning, ...] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    headers = dict(headers or {})
    if warnings:
        headers["Warning"] = ", ".join(warning_header(w) for w in warnings)
    if wants_yaml(request):
        return Response(dump_yaml(data), status_code=status_code, media_type=YAML_TYPE, headers=headers)
    return Response(dump_json(data), status_code=status_code, media_type=JSON_TYPE, headers=headers)


def dump_json(data: Any) -> bytes:
    """Compact JSON; orjson for speed, the standard library for what orjson refuses (integers beyond
    64 bits). Strings are known to be valid UTF-8: bodies with unpaired surrogates are refused."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def warning_header(warning: SpecWarning) -> str:
    """RFC 7234 warn-value as Kubernetes sends it: ``299 - "text"`` (ASCII, quotes escaped)."""
    text = f"{warning.path}: {warning.message}".encode("ascii", "replace").decode("ascii")
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def decode_body(data: bytes, content_type: str | None) -> Any:
    """One object from a JSON or YAML body; the Content-Type decides, JSON when absent."""
    media = (content_type or JSON_TYPE).split(";")[0].strip().lower()
    if not data.strip():
        raise ApiError(400, "BadRequest", "empty body: send a JSON or YAML object")
    try:
        text = decode_text(data)
        if media in YAML_TYPES:
            documents = load_yaml_documents(text)
            if len(documents) != 1:
                raise ApiError(
                    400, "BadRequest", f"expected one YAML document, got {len(documents)}; send one object per request"
                )
            return documents[0]
        if media == JSON_TYPE or media.endswith("+json"):
            return load_json(text)
    except DecodeError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from exc
    raise ApiError(
        415, "UnsupportedMediaType", f"Content-Type {media!r} is not supported; use {JSON_TYPE} or {YAML_TYPE}"
    )
