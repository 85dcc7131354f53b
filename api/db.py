"""Database engine and migrations for the evaluator process (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
SQLITE_BUSY_TIMEOUT_S = 15
MIGRATION_LOCK_KEY = 0x706F6C6963790001  # "policy" + 1: this application's advisory lock


def make_engine(
    url: str,
    *,
    lock_timeout: float | None = None,
    pool_timeout: float | None = None,
    write_lock: WriteLock | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine with the settings policywatch needs: SQLite with foreign keys on, WAL and a busy
    timeout (so a status write waiting for a spec write does not fail at once).

    ``lock_timeout`` (seconds) bounds how long a statement waits for a lock another connection holds
    (SQLite's busy timeout, PostgreSQL's ``lock_timeout``): past it the request fails with a database
    error that the API answers 503, instead of holding a connection and a thread for as long as the lock.
    ``pool_timeout`` (seconds) bounds the wait for a free pooled connection (also answered 503).
    ``write_lock`` (SQLite) is the lock writers queue on (``serialized_writes``): by default one of this
    engine's own; the ingest worker processes share a ``multiprocessing.Lock``.
    """
    parsed = make_url(url)
    memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
    if pool_timeout is not None and not memory and "poolclass" not in kwargs:
        kwargs.setdefault("pool_timeout", pool_timeout)
    if parsed.get_backend_name() == "sqlite":
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("check_same_thread", False)
        busy_timeout = SQLITE_BUSY_TIMEOUT_S if lock_timeout is None else lock_timeout
        connect_args.setdefault("timeout", busy_timeout)
        if not memory:
            connect_args.setdefault("factory", serialized_writes(busy_timeout, write_lock))
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if lock_timeout is not None and parsed.get_backend_name() == "postgresql":
        connect_args = dict(kwargs.pop("connect_args", {}))
        options = connect_args.get("options", "")
        connect_args["options"] = f"{options} -c lock_timeout={max(1, round(lock_timeout * 1000))}".strip()
        kwargs["connect_args"] = connect_args
    return create_engine(url, **kwargs)


class ReadOnlyDatabase(Exception):
    """The database answers reads but refuses writes (a read-only file, directory or connection)."""


def check_writable(url: str) -> None:
    """Refuse a SQLite database this process cannot write, at start: otherwise reads are served and every
    write is a 503 "retry later" that no retry can cure. The probe writes a row's value back in a
    transaction that is rolled back, so nothing changes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                connection.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
            finally:
                connection.exec_driver_sql("ROLLBACK")
    except OperationalError as exc:
        reason = str(exc.orig or exc)
        if "readonly" in reason or "read-only" in reason or "unable to open" in reason:
            raise ReadOnlyDatabase(
                f"the SQLite database {parsed.database} is read-only for this process ({reason}): make the file "
                "and its directory writable (WAL needs its -wal and -shm files beside it), or point "
                "--database-url at a writable file"
            ) from None
        raise
    finally:
        engine.dispose()


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")


class WriteLock(Protocol):
    """What ``serialized_writes`` needs of a lock: ``threading.Lock`` and ``multiprocessing.Lock`` both."""

    def acquire(self, *, timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


def serialized_writes(timeout: float, lock: WriteLock | None = None) -> type[sqlite3.Connection]:
    """A ``sqlite3.Connection`` class whose write transactions queue on one lock per engine.

    SQLite has one writer at a time; a writer that finds the file locked polls with sleeps of up to 100 ms
    (its busy handler), and under a steady stream of short write transactions (the scheduler's) it keeps
    missing the moments the lock is free: API writes then wait for seconds. Queued on a lock in this
    process instead, each writer starts the moment the previous one commits. Other processes still meet
    the busy handler, as before, unless they share ``lock`` (a ``multiprocessing.Lock``); waiting longer
    than ``timeout`` is "database is locked", as from SQLite.
    """
    queue: WriteLock = lock if lock is not None else threading.Lock()

    class SerializedCursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = (), /) -> SerializedCursor:
            connection: SerializedConnection = self.connection  # type: ignore[assignment]
            connection.before(sql)
            try:
                super().execute(sql, parameters)
            finally:
                connection.after()
            return self

        def executemany(self, sql: str, parameters: Any, /) -> SerializedCursor:
            connection: SerializedConnection = self.connection  # type: ignore[assignment]
            connection.before(sql)
            try:
                super().executemany(sql, parameters)
            finally:
                connection.after()
            return self

    class SerializedConnection(sqlite3.Connection):
        holds = False

        def cursor(self, factory: Any = None) -> Any:
            return super().cursor(factory or SerializedCursor)

        def before(self, sql: str) -> None:
            if not self.holds and sql.lstrip()[:16].upper().startswith(_WRITES):
                if not queue.acquire(timeout=timeout):
                    raise sqlite3.OperationalError("database is locked (waited for the engine's other writers)")
                self.holds = True

        def after(self) -> None:
            if self.holds and not self.in_transaction:  # an autocommit statement, or COMMIT / ROLLBACK as SQL
                self.release()

        def release(self) -> None:
            if self.holds:
                self.holds = False
                queue.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self.release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self.release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self.release()

    return SerializedConnection


def alembic_config(url: str) -> Config:
    """An Alembic config that works wherever the package is installed (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` (creating a SQLite file if needed).

    On PostgreSQL a session advisory lock serialises evaluators that start at the same time (several
    replicas), so only one runs the migrations and the others find the schema done.
    """
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
    finally:
        engine.dispose()


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
