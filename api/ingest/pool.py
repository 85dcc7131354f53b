"""Bulk requests parsed, mapped and stored by worker processes (``POLICYWATCH_INGEST_PROCESSES``).

One evaluator process stores bulk requests at about one core's worth of Python: parsing, validating and
mapping each record holds the interpreter's lock. With ``ingest_processes`` > 0 each request's body goes
to one of that many worker processes (a ``ProcessPoolExecutor``, started with ``spawn``), which runs the
same ``ingest_es_bulk`` / ``ingest_records`` on an engine of its own over the same database and sends
back the answer. The database still settles every race (SQLite's write lock, the unique keys), so a
request is stored once and whole, or not at all, whichever process stores it.

A worker that dies (killed, out of memory) breaks the pool: a request it had is answered 503 (a retry
is stored once, by its keys), and the pool is started again for the next request.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.db import WriteLock, make_engine
from evaluator.engine.ingest import store_busy
from evaluator.engine.sqlstore import SqlLogStore

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2)
_ENGINES: dict[str, sa.Engine] = {}  # in a worker: one engine per database URL, for the worker's life
_WRITE_LOCK: list[WriteLock] = []  # in a worker: the lock its pool's workers queue their SQLite writes on


def _engine(url: str, lock_timeout: float | None) -> sa.Engine:
    engine = _ENGINES.get(url)
    if engine is None:
        write_lock = _WRITE_LOCK[0] if _WRITE_LOCK else None
        engine = _ENGINES[url] = make_engine(url, lock_timeout=lock_timeout, write_lock=write_lock)
    return engine


class StoreFailed(Exception):
    """The store failed in a worker: ``busy`` as ``evaluator.engine.ingest.store_busy`` judged it there."""

    def __init__(self, busy: bool, message: str) -> None:
        super().__init__(message)
        self.busy = busy

    def __reduce__(self) -> tuple[Any, ...]:
        return StoreFailed, (self.busy, str(self))


def _run(
    url: str, lock_timeout: float | None, work: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """In a worker: ``work(engine, *args, **kwargs)``; a store failure as StoreFailed, which crosses back
    intact (BulkMalformed does as it is)."""
    try:
        return work(_engine(url, lock_timeout), *args, **kwargs)
    except (DBAPIError, PoolTimeout) as exc:
        raise StoreFailed(store_busy(exc), str(exc)) from None


class IngestPool:
    """``processes`` worker processes storing bulk requests into the database at ``url``; a Service."""

    def __init__(self, url: str, processes: int, *, lock_timeout: float | None = None) -> None:
        self.url = url
        self.processes = processes
        self.lock_timeout = lock_timeout  # the workers' engines', as ``api.db.make_engine`` takes it
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_runtime(
        cls, processes: int, sql_logs: SqlLogStore | None, *, lock_timeout: float | None = None
    ) -> IngestPool | None:
        """The pool of ``processes`` workers over the embedded log store's database, or None (0, or logs
        in OpenSearch); ValueError for a database the workers cannot share (SQLite in memory)."""
        if processes == 0 or sql_logs is None:
            return None
        url = sql_logs.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError(
                f"--ingest-processes {processes} needs a database the worker processes can share, not SQLite in "
                "memory; use a file (sqlite:///path.db) or PostgreSQL"
            )
        return cls(url.render_as_string(hide_password=False), processes, lock_timeout=lock_timeout)

    async def start(self) -> None:
        self._pool()
        # Workers start on first use; start them now, so that a worker that cannot start fails the start.
        await asyncio.gather(*(self._submit(_ready) for _ in range(self.processes)))

    async def stop(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("spawn")
                # SQLite's writers queue on one lock across the workers: each starts as the previous commits,
                # where SQLite's own busy handler would poll with sleeps of up to 100 ms. A worker killed while
                # holding it breaks the pool, and the next pool has a new lock.
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=context,
                    initializer=_start_worker,
                    initargs=(os.getpid(), context.Lock()),
                )
            return self._executor

    def _discard(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    async def _submit(self, work: Callable[..., Any], *args: Any) -> Any:
        executor = self._pool()
        try:
            future = executor.submit(work, *args)
        except BrokenProcessPool:  # a worker died while the pool was idle: nothing was sent, start afresh
            self._discard(executor)
            executor = self._pool()
            future = executor.submit(work, *args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._discard(executor)
            raise

    async def run(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``work(engine, *args, **kwargs)`` in a worker: BulkMalformed and StoreFailed as there; a worker
        that died is StoreFailed (not busy), and the next request gets a new pool."""
        try:
            return await self._submit(_run, self.url, self.lock_timeout, work, args, kwargs)
        except BrokenProcessPool as exc:
            log.warning("an ingest worker process died; the request was not answered as stored: %s", exc)
            raise StoreFailed(False, "an ingest worker process died") from None


def _start_worker(parent: int, write_lock: WriteLock) -> None:
    """In a new worker: keep the pool's write lock; SIGTERM when the evaluator dies, even by SIGKILL (Linux's
    parent-death signal): workers would otherwise live on, orphaned, holding database connections."""
    _WRITE_LOCK[:] = [write_lock]
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the evaluator died before that took effect
        os._exit(0)


def _ready() -> bool:
    return True
