"""Writing validated records once: each carries an ingest key, and a key already stored is not stored again.

The key is ``id:`` + the document's ``_id`` when the sender gave one (column ``ingest_key``, a unique
index over the rows that have one), else ``hash:`` + a 128-bit hash of the record as received, of which
the first 64 bits are stored (``ingest_hash``). The content hash is unique together with the record's
time, in the time index that every record is written to anyway: no index of its own on the hot path,
and a retried record, whose time is its own, is found in it however long ago it was stored. The
database is the judge, so two senders racing with the same batch store it once (the loser's
transaction fails and is retried by the caller, then finds the keys). The caller owns the transaction:
everything here runs in ``conn``'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from evaluator.logstore.mapper import FlatRows, mapper, scalar_columns
from evaluator.logstore.tables import (
    RecordInvalid,
    RecordText,
    column_name,
    record_text,
    table_for,
    values_table_for,
)
from evaluator.query.schema import TIME_FIELD

KEY_CHUNK = 500  # keys per IN (...) lookup
PAIR_CHUNK = 400  # (time, hash) pairs per lookup: two bound variables each, within SQLite's 999
# Rows per multi-row INSERT on SQLite, within the connection's bound-variable limit (999 before 3.32,
# 32766 or more since). Few statements matter beyond SQLite's per-statement work: the driver releases the
# GIL around every statement's step and must take it back, which waits for the switch interval while
# another thread (parsing the next request) holds it.
MULTI_ROW_MAX = 1024
SQLITE_MAX_VARIABLES = 999  # when the driver cannot tell (Python's sqlite3 tells since 3.11)


class Outcome(StrEnum):
    CREATED = "created"  # stored now
    UPDATED = "updated"  # an ``index`` with a known _id: the stored record replaced
    DUPLICATE = "duplicate"  # the same key is stored already (a retry): nothing written
    CONFLICT = "conflict"  # a ``create`` with a known _id: refused, as Elasticsearch does


@dataclass(frozen=True, slots=True)
class Keyed:
    """One validated record to write: its rows, its ingest key, and whether a known key replaces."""

    rows: FlatRows
    key: str  # "id:" + _id, or "hash:" + 32 hex digits
    replace: bool = False  # ``index`` with an _id (Elasticsearch overwrites); else a known key is kept


Identity = str | tuple[float, int]  # an "id:" key, or (time, content hash)


def content_hash(key: str) -> int:
    """The stored 64-bit form (signed, as BIGINT holds it) of a ``hash:`` key's first 16 hex digits."""
    value = int(key[5:21], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def write_keyed(conn: Connection, dataset: str, items: Sequence[Keyed]) -> list[Outcome]:
    """Store ``items`` of ``dataset`` in ``conn``'s transaction; one outcome per item, in order.

    Within the batch the same key behaves as if the items came one after the other: a repeat is a
    duplicate (or replaces, or conflicts, like against a stored one).
    """
    main = table_for(dataset)
    at = _time_position(dataset)
    identities: list[Identity] = [
        item.key if item.key.startswith("id:") else (item.rows.scalars[at], content_hash(item.key)) for item in items
    ]
    stored = _stored(conn, dataset, identities)
    outcomes: list[Outcome] = []
    chosen: dict[Identity, int] = {}  # identity -> index in items of the record that will be written
    replaced: list[int] = []  # ids of stored records an ``index`` overwrites
    for position, (item, identity) in enumerate(zip(items, identities, strict=True)):
        known = identity in chosen or identity in stored
        if not known:
            chosen[identity] = position
            outcomes.append(Outcome.CREATED)
        elif item.replace:
            if identity in stored:
                replaced.append(stored.pop(identity))
            chosen[identity] = position
            outcomes.append(Outcome.UPDATED)
        elif type(identity) is str:
            outcomes.append(Outcome.CONFLICT)
        else:
            outcomes.append(Outcome.DUPLICATE)
    if replaced:
        values = values_table_for(dataset)
        for start in range(0, len(replaced), KEY_CHUNK):
            chunk = replaced[start : start + KEY_CHUNK]
            conn.execute(values.delete().where(values.c.record_id.in_(chunk)))
            conn.execute(main.delete().where(main.c.id.in_(chunk)))
    positions = sorted(chosen.values())
    keys: list[str | None] = []
    hashes: list[int | None] = []
    for position in positions:
        identity = identities[position]
        if isinstance(identity, str):
            keys.append(identity)
            hashes.append(None)
        else:
            keys.append(None)
            hashes.append(identity[1])
    insert_flat(conn, dataset, [items[position].rows for position in positions], keys=keys, hashes=hashes)
    return outcomes


def insert_records(conn: Connection, dataset: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Validate and insert ``records`` (all or none: the first bad one raises RecordInvalid); no ingest keys.

    The same compiled mapping as ingest; the ``record`` column gets the record serialised here
    (``record_text``), where ingest stores the line as received.
    """
    table_for(dataset)  # an unknown data set: QueryError
    map_record = mapper(dataset)
    mapped: list[FlatRows] = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise RecordInvalid(index=index, field="", value=record, reason="a log record must be a JSON object")
        text = record_text(record, index)
        scalars, values = map_record(record, index)
        mapped.append(FlatRows(scalars, values, text))
    return insert_flat(conn, dataset, mapped)


def insert_flat(
    conn: Connection,
    dataset: str,
    mapped: Sequence[FlatRows],
    *,
    keys: Sequence[str | None] | None = None,
    hashes: Sequence[int | None] | None = None,
) -> int:
    """Insert mapped records (and their values rows); ``keys`` are their ``id:`` keys, ``hashes`` their
    content hashes (both given, or neither).

    On SQLite and PostgreSQL the ids are allocated first (the table's maximum under SQLite's write lock,
    or the sequence) and both tables get one driver-level executemany: several times faster than an
    INSERT ... RETURNING through the ORM layer, which other databases use.
    """
    if not mapped:
        return 0
    main, values = table_for(dataset), values_table_for(dataset)
    columns = scalar_columns(dataset)
    key_list: Sequence[str | None] = keys if keys is not None else [None] * len(mapped)
    hash_list: Sequence[int | None] = hashes if hashes is not None else [None] * len(mapped)
    ids = _allocate_ids(conn, main, len(mapped))
    if ids is None:
        rows = [
            {
                **dict(zip(columns, item.scalars, strict=True)),
                "record": RecordText(item.text),
                "ingest_key": key,
                "ingest_hash": digest,
            }
            for item, key, digest in zip(mapped, key_list, hash_list, strict=True)
        ]
        result = conn.execute(main.insert().returning(main.c.id, sort_by_parameter_order=True), rows)
        ids = [row[0] for row in result]
        value_rows = [
            {"record_id": record_id, "key": key, "value": value, "ip_key": ip}
            for record_id, item in zip(ids, mapped, strict=True)
            for key, value, ip in item.values
        ]
        if value_rows:
            conn.execute(values.insert(), value_rows)
        return len(mapped)
    if conn.dialect.name == "sqlite":
        _insert_sqlite(conn, dataset, ids, mapped, None if keys is None else (key_list, hash_list))
        return len(mapped)
    if keys is None:  # (also a table from before the ingest keys' revision)
        main_rows = [(record_id, *item.scalars, item.text) for record_id, item in zip(ids, mapped, strict=True)]
        _bulk_insert(conn, main.name, ("id", *columns, "record"), main_rows)
    else:
        main_rows = [
            (record_id, *item.scalars, item.text, key, digest)
            for record_id, item, key, digest in zip(ids, mapped, key_list, hash_list, strict=True)
        ]
        _bulk_insert(conn, main.name, ("id", *columns, "record", "ingest_key", "ingest_hash"), main_rows)
    value_rows_raw = [(record_id, *value) for record_id, item in zip(ids, mapped, strict=True) for value in item.values]
    if value_rows_raw:
        _bulk_insert(conn, values.name, ("record_id", "key", "value", "ip_key"), value_rows_raw)
    return len(mapped)


def _insert_sqlite(
    conn: Connection,
    dataset: str,
    ids: Sequence[int],
    mapped: Sequence[FlatRows],
    keyed: tuple[Sequence[str | None], Sequence[int | None]] | None,
) -> None:
    """The rows of both tables as one flat list of values each, bound in multi-row INSERTs: no tuple per
    row (or per value) to build and free."""
    columns = scalar_columns(dataset)
    main: list[Any] = []
    add, extend = main.append, main.extend
    if keyed is None:
        names: tuple[str, ...] = ("id", *columns, "record")
        for record_id, item in zip(ids, mapped, strict=True):
            add(record_id)
            extend(item.scalars)
            add(item.text)
    else:
        names = ("id", *columns, "record", "ingest_key", "ingest_hash")
        for record_id, item, key, digest in zip(ids, mapped, *keyed, strict=True):
            add(record_id)
            extend(item.scalars)
            add(item.text)
            add(key)
            add(digest)
    _sqlite_rows(conn, table_for(dataset).name, names, main)
    values: list[Any] = []
    add, extend = values.append, values.extend
    for record_id, item in zip(ids, mapped, strict=True):
        for value in item.values:
            add(record_id)
            extend(value)
    _sqlite_rows(conn, values_table_for(dataset).name, ("record_id", "key", "value", "ip_key"), values)


def _sqlite_rows(conn: Connection, table: str, columns: Sequence[str], flat: list[Any]) -> None:
    """``flat`` (the values of rows one after the other) into ``table``: full groups of rows per INSERT
    (SQLite's per-statement work once per group), then the rest in one INSERT."""
    width = len(columns)
    rows = len(flat) // width
    per = max(1, min(MULTI_ROW_MAX, _variable_limit(conn) // width))
    whole = rows - rows % per
    if whole:
        step = per * width
        groups = [tuple(flat[start : start + step]) for start in range(0, whole * width, step)]
        conn.exec_driver_sql(insert_sql(conn, table, columns, per), groups)
    if rows > whole:
        conn.exec_driver_sql(insert_sql(conn, table, columns, rows - whole), tuple(flat[whole * width :]))


def lock_for_write(conn: Connection) -> None:
    """Take the database's write lock now (SQLite: BEGIN IMMEDIATE), so that reading the stored keys and
    writing are one atomic step; a busy store fails here, before any work. PostgreSQL needs nothing:
    the unique index settles races."""
    if conn.dialect.name == "sqlite" and not conn.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _allocate_ids(conn: Connection, main: sa.Table, count: int) -> list[int] | None:
    if conn.dialect.name == "sqlite":
        lock_for_write(conn)
        top = conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {main.name}").scalar_one()
        return list(range(int(top) + 1, int(top) + 1 + count))
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            f"SELECT nextval(pg_get_serial_sequence('{main.name}', 'id')) FROM generate_series(1, {int(count)})"
        )
        return [int(row[0]) for row in rows]
    return None


def _bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows into ``table`` in ``conn``'s transaction: PostgreSQL's COPY (psycopg), else one executemany."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        quote = conn.dialect.identifier_preparer.quote
        statement = f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
        dbapi = conn.dialect.loaded_dbapi
        try:
            with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
                write = copy.write_row
                for row in rows:
                    write(row)
        except dbapi.Error as exc:  # as SQLAlchemy raises it (IntegrityError, OperationalError, ...)
            raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
        return
    conn.exec_driver_sql(insert_sql(conn, table, columns), rows)


def _variable_limit(conn: Connection) -> int:
    driver = conn.connection.driver_connection
    try:
        return int(driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # type: ignore[union-attr]
    except (AttributeError, sqlite3.Error):
        return SQLITE_MAX_VARIABLES


def insert_sql(conn: Connection, table: str, columns: Sequence[str], per: int = 1) -> str:
    """``INSERT INTO table (columns) VALUES (...)`` with ``per`` rows of the driver's placeholders."""
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    row = f"({', '.join([marker] * len(columns))})"
    return f"INSERT INTO {quote(table)} ({names}) VALUES {', '.join([row] * per)}"


def _time_position(dataset: str) -> int:
    return scalar_columns(dataset).index(column_name(TIME_FIELD[dataset]))


def _stored(conn: Connection, dataset: str, identities: Sequence[Identity]) -> dict[Identity, int]:
    """The stored records' ids of those ``identities`` that are stored: ``id:`` keys through their index,
    (time, hash) pairs through the time index, each a probe of the index."""
    main = table_for(dataset).name
    time_column = column_name(TIME_FIELD[dataset])
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    found: dict[Identity, int] = {}
    keys = sorted({identity for identity in identities if type(identity) is str})
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        statement = f"SELECT id, ingest_key FROM {main} WHERE ingest_key IN ({', '.join([marker] * len(chunk))})"
        for record_id, key in conn.exec_driver_sql(statement, tuple(chunk)):
            found[key] = record_id
    pairs = sorted({identity for identity in identities if not isinstance(identity, str)})
    pair = f"(CAST({marker} AS DOUBLE PRECISION), CAST({marker} AS BIGINT))"
    for start in range(0, len(pairs), PAIR_CHUNK):
        chunk_pairs = pairs[start : start + PAIR_CHUNK]
        statement = (
            f"WITH k (t, h) AS (VALUES {', '.join([pair] * len(chunk_pairs))}) "
            f"SELECT m.id, m.{time_column}, m.ingest_hash FROM k JOIN {main} m "
            f"ON m.{time_column} = k.t AND m.ingest_hash = k.h"
        )
        parameters = tuple(chain.from_iterable(chunk_pairs))
        for record_id, seconds, digest in conn.exec_driver_sql(statement, parameters):
            found[(seconds, digest)] = record_id
    return found
