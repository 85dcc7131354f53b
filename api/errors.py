"""Exception handlers: every failure becomes a ``Status`` body (JSON, or YAML when asked) with a reason
a user can act on. Nothing a client sends may produce a 500.

The body is a ``metav1.Status`` as the Kubernetes API sends it, which is what client-go (kubectl) reads:
``reason``, ``details.name``, ``details.group``, ``details.kind`` and ``details.causes[]`` (field,
message, reason). ``errors[]`` (path, value, reason) stays beside it for policywatchctl and older
clients."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.http import ApiError, render, status_body
from api.resources import GROUP, KINDS, Kind, ObjectInvalid
from api.store import AlreadyExists, Conflict, Expired, NotFound, ObjectStoreError, UidConflict
from evaluator.alerts import FieldError, SpecInvalid

log = logging.getLogger(__name__)
_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "RequestEntityTooLarge",
}


def _request_kind(request: Request) -> Kind | None:
    """The resource kind a request's path names (``/globalalerts/x``, ``/apis/.../globalalerttemplates``)."""
    segments = set(request.url.path.split("/"))
    return next((k for k in KINDS if k.plural in segments), None)


def kube_status(
    request: Request,
    code: int,
    reason: str,
    message: str,
    errors: list[FieldError] | None = None,
    *,
    kind: Kind | None = None,
    name: str | None = None,
    by_kind: bool = False,
) -> dict[str, Any]:
    """A Status with ``details``: ``kind`` is the resource's plural, as Kubernetes reports NotFound and
    Conflict, or with ``by_kind`` its Kind, as it reports Invalid."""
    body = {**status_body(code, reason, message, errors), "metadata": {}}
    kind = kind or _request_kind(request)
    if name is None:
        path_name = request.path_params.get("name")
        name = path_name if isinstance(path_name, str) else None
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if kind is not None:
        details["group"] = GROUP
        details["kind"] = kind.kind if by_kind else kind.plural
    if errors:
        details["causes"] = [
            {"reason": "FieldValueInvalid", "message": e.reason, "field": e.path or "<object>"} for e in errors
        ]
    if details:
        body["details"] = details
    return body


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        body = kube_status(
            request, exc.status_code, exc.reason, exc.message, exc.errors, by_kind=exc.reason == "Invalid"
        )
        return render(request, body, status_code=exc.status_code, headers=exc.headers)

    async def spec_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SpecInvalid)
        count = len(exc.errors)
        message = f"invalid object: {count} error{'s' if count != 1 else ''}: " + "; ".join(
            f"{e.path or '(object)'}: {e.reason}" for e in exc.errors
        )
        kind, name = (exc.kind, exc.name) if isinstance(exc, ObjectInvalid) else (None, None)
        body = kube_status(request, 422, "Invalid", message, exc.errors, kind=kind, name=name, by_kind=True)
        return render(request, body, status_code=422)

    async def store_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ObjectStoreError)
        code, reason = 500, "InternalError"
        if isinstance(exc, NotFound):
            code, reason = 404, "NotFound"
        elif isinstance(exc, AlreadyExists):
            code, reason = 409, "AlreadyExists"
        elif isinstance(exc, Conflict | UidConflict):
            code, reason = 409, "Conflict"
        body = kube_status(request, code, reason, str(exc), kind=exc.kind, name=exc.name)
        return render(request, body, status_code=code)

    async def expired(request: Request, exc: Exception) -> Response:
        return render(request, kube_status(request, 410, "Expired", str(exc)), status_code=410)

    async def request_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(".".join(str(p) for p in e.get("loc", ())), e.get("input"), str(e.get("msg", "invalid")))
            for e in exc.errors()
        ]
        message = "invalid request: " + "; ".join(f"{e.path}: {e.reason}" for e in errors)
        return render(request, kube_status(request, 400, "BadRequest", message, errors), status_code=400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        reason = _REASONS.get(exc.status_code, "Error")
        return render(
            request,
            kube_status(request, exc.status_code, reason, str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def database_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
        message = "the database is unavailable or busy; retry later"
        return render(
            request, status_body(503, "ServiceUnavailable", message), status_code=503, headers={"Retry-After": "5"}
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return render(
            request,
            status_body(500, "InternalError", f"internal error ({type(exc).__name__}); see the server log"),
            status_code=500,
            headers={"Connection": "close"},  # the server drops the connection after an unhandled error
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(SpecInvalid, spec_invalid)
    app.add_exception_handler(ObjectStoreError, store_error)
    app.add_exception_handler(Expired, expired)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(Exception, unexpected)
