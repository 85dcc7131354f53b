"""Exception handlers: every failure becomes a ``Status`` body (JSON, or YAML when asked) with a reason
a user can act on. Nothing a client sends may produce a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.http import ApiError, render, status_body
from api.store import AlreadyExists, Conflict, NotFound, StoreError
from evaluator.alerts import FieldError, SpecInvalid

log = logging.getLogger(__name__)
_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "RequestEntityTooLarge",
}


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        body = status_body(exc.status_code, exc.reason, exc.message, exc.errors)
        return render(request, body, status_code=exc.status_code, headers=exc.headers)

    async def spec_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SpecInvalid)
        count = len(exc.errors)
        message = f"invalid object: {count} error{'s' if count != 1 else ''}: " + "; ".join(
            f"{e.path or '(object)'}: {e.reason}" for e in exc.errors
        )
        return render(request, status_body(422, "Invalid", message, exc.errors), status_code=422)

    async def store_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreError)
        code, reason = 500, "InternalError"
        if isinstance(exc, NotFound):
            code, reason = 404, "NotFound"
        elif isinstance(exc, AlreadyExists):
            code, reason = 409, "AlreadyExists"
        elif isinstance(exc, Conflict):
            code, reason = 409, "Conflict"
        return render(request, status_body(code, reason, str(exc)), status_code=code)

    async def request_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(".".join(str(p) for p in e.get("loc", ())), e.get("input"), str(e.get("msg", "invalid")))
            for e in exc.errors()
        ]
        message = "invalid request: " + "; ".join(f"{e.path}: {e.reason}" for e in errors)
        return render(request, status_body(400, "BadRequest", message, errors), status_code=400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        reason = _REASONS.get(exc.status_code, "Error")
        return render(
            request,
            status_body(exc.status_code, reason, str(exc.detail)),
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
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(Exception, unexpected)
