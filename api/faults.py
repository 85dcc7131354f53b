"""Database faults as answers a client can act on, never a 500.

Registered by ``create_app`` beside ``api.errors``:

- the connection pool running out (every connection busy behind a lock) -> 503 with ``Retry-After``;
- a constraint violated by a concurrent request (a DELETE and a POST of one name racing) -> 409;
- a value the database refuses to store or compare (PostgreSQL ``DataError``) -> 400.

Messages never carry the driver's text: it names the database host, port and user.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.http import RETRY_AFTER_S, render, status_body

log = logging.getLogger(__name__)

BUSY = "the database is busy (every connection is waiting on a lock); retry later"
RACED = "the object was changed by a concurrent request (e.g. deleted while being created); get it and retry"
REFUSED = "a value of the request cannot be stored or compared by the database; check the parameters"


async def pool_exhausted(request: Request, exc: Exception) -> Response:
    log.warning("connection pool exhausted on %s %s: %s", request.method, request.url.path, exc)
    return render(
        request,
        status_body(503, "ServiceUnavailable", BUSY),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def integrity_conflict(request: Request, exc: Exception) -> Response:
    log.info("constraint conflict on %s %s: %s", request.method, request.url.path, exc)
    return render(request, status_body(409, "Conflict", RACED), status_code=409)


async def data_refused(request: Request, exc: Exception) -> Response:
    log.info("database refused a value on %s %s: %s", request.method, request.url.path, exc)
    return render(request, status_body(400, "BadRequest", REFUSED), status_code=400)


def install_fault_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PoolTimeout, pool_exhausted)
    app.add_exception_handler(IntegrityError, integrity_conflict)
    app.add_exception_handler(DataError, data_refused)
