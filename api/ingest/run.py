"""Running one bulk request against the store: a bounded number at once, failures as 429/503 with Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.ingest.pool import IngestPool, StoreFailed
from evaluator.engine.ingest import store_busy

log = logging.getLogger(__name__)
T = TypeVar("T")
BUSY_RETRY_AFTER = "2"
DOWN_RETRY_AFTER = "5"


class IngestUnavailable(Exception):
    """The store cannot take the request now; nothing of it was stored. ``status`` is 429 or 503."""

    def __init__(self, status: int, message: str, retry_after: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after}


def _gate(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    gate: asyncio.Semaphore | None = getattr(state, "ingest_gate", None)
    if gate is None:
        gate = state.ingest_gate = asyncio.Semaphore(state.services.settings.ingest_concurrency)
    return gate


@contextlib.asynccontextmanager
async def ingest_slot(request: Request) -> AsyncIterator[None]:
    """One of the ``ingest_concurrency`` slots, held while the body is read and stored (bounding memory);
    waiting longer than ``ingest_wait`` is 429."""
    settings = request.app.state.services.settings
    gate = _gate(request)
    try:
        await asyncio.wait_for(gate.acquire(), timeout=settings.ingest_wait)
    except TimeoutError:
        raise IngestUnavailable(
            429, f"{settings.ingest_concurrency} bulk requests are being stored; retry later", BUSY_RETRY_AFTER
        ) from None
    try:
        yield
    finally:
        gate.release()


async def run_ingest(request: Request, engine: Engine, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(engine, *args, **kwargs)`` (which stores) in a worker thread, or in an ingest worker process
    (``api.ingest.pool``) when the app has them; the store failing is 429 when it is busy (locked by another
    writer, pool exhausted) and 503 otherwise. Messages never name the database's host or user."""
    pool: IngestPool | None = getattr(request.app.state, "ingest_pool", None)
    try:
        if pool is not None:
            result: T = await pool.run(work, *args, **kwargs)
            return result
        return await run_in_threadpool(work, engine, *args, **kwargs)
    except (DBAPIError, PoolTimeout, StoreFailed) as exc:
        log.warning("bulk ingest on %s failed, nothing stored: %s", request.url.path, exc)
        busy = exc.busy if isinstance(exc, StoreFailed) else store_busy(exc)
        if busy:
            raise IngestUnavailable(
                429, "the log store is busy (locked by another writer); nothing was stored, retry", BUSY_RETRY_AFTER
            ) from exc
        raise IngestUnavailable(
            503, "the log store is unavailable; nothing was stored, retry later", DOWN_RETRY_AFTER
        ) from exc
