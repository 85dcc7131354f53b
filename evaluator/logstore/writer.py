"""Writing validated records once: each carries an ingest key, and a key already stored is not stored again.

The key is ``id:`` + the document's ``_id`` when the sender gave one, else ``hash:`` + a hash of the
record's canonical JSON. A unique index on ``ingest_key`` makes the database the judge, so two
senders racing with the same batch store it once (the loser's transaction fails and is retried by the
caller, then finds the keys). The caller owns the transaction: everything here runs in ``conn``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from evaluator.logstore.tables import RecordRows, RecordText, record_to_rows, table_for, values_table_for

KEY_CHUNK = 500  # keys per IN (...) lookup


class Outcome(StrEnum):
    CREATED = "created"  # stored now
    UPDATED = "updated"  # an ``index`` with a known _id: the stored record replaced
    DUPLICATE = "duplicate"  # the same key is stored already (a retry): nothing written
    CONFLICT = "conflict"  # a ``create`` with a known _id: refused, as Elasticsearch does


@dataclass(frozen=True, slots=True)
class Keyed:
    """One validated record to write: its rows, its ingest key, and whether a known key replaces."""

    rows: RecordRows
    key: str
    replace: bool = False  # ``index`` with an _id (Elasticsearch overwrites); else a known key is kept


def write_keyed(conn: Connection, dataset: str, items: Sequence[Keyed]) -> list[Outcome]:
    """Store ``items`` of ``dataset`` in ``conn``'s transaction; one outcome per item, in order.

    Within the batch the same key behaves as if the items came one after the other: a repeat is a
    duplicate (or replaces, or conflicts, like against a stored one).
    """
    main = table_for(dataset)
    stored = _stored_keys(conn, main, {item.key for item in items})
    outcomes: list[Outcome] = []
    chosen: dict[str, int] = {}  # key -> index in items of the record that will be written
    replaced: list[int] = []  # ids of stored records an ``index`` overwrites
    for position, item in enumerate(items):
        known = item.key in chosen or item.key in stored
        if not known:
            chosen[item.key] = position
            outcomes.append(Outcome.CREATED)
        elif item.replace:
            if item.key in stored:
                replaced.append(stored.pop(item.key))
            chosen[item.key] = position
            outcomes.append(Outcome.UPDATED)
        elif item.key.startswith("id:"):
            outcomes.append(Outcome.CONFLICT)
        else:
            outcomes.append(Outcome.DUPLICATE)
    if replaced:
        values = values_table_for(dataset)
        for start in range(0, len(replaced), KEY_CHUNK):
            chunk = replaced[start : start + KEY_CHUNK]
            conn.execute(values.delete().where(values.c.record_id.in_(chunk)))
            conn.execute(main.delete().where(main.c.id.in_(chunk)))
    written = [items[position] for position in sorted(chosen.values())]
    insert_rows(conn, dataset, [item.rows for item in written], keys=[item.key for item in written])
    return outcomes


def insert_records(conn: Connection, dataset: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Validate and insert ``records`` (all or none: the first bad one raises RecordInvalid); no ingest keys."""
    return insert_rows(conn, dataset, [record_to_rows(dataset, record, index=i) for i, record in enumerate(records)])


def insert_rows(
    conn: Connection, dataset: str, mapped: Sequence[RecordRows], *, keys: Sequence[str | None] | None = None
) -> int:
    """Insert mapped records (and their values rows); ``keys`` are their ingest keys."""
    if not mapped:
        return 0
    main, values = table_for(dataset), values_table_for(dataset)
    rows: list[dict[str, Any]] = [{**item.row, "record": RecordText(item.text)} for item in mapped]
    if keys is not None:
        for row, key in zip(rows, keys, strict=True):
            row["ingest_key"] = key
    result = conn.execute(main.insert().returning(main.c.id, sort_by_parameter_order=True), rows)
    ids = [row[0] for row in result]
    value_rows = [
        {**value, "record_id": record_id} for record_id, item in zip(ids, mapped, strict=True) for value in item.values
    ]
    if value_rows:
        conn.execute(values.insert(), value_rows)
    return len(mapped)


def _stored_keys(conn: Connection, main: sa.Table, keys: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), KEY_CHUNK):
        chunk = ordered[start : start + KEY_CHUNK]
        for record_id, key in conn.execute(sa.select(main.c.id, main.c.ingest_key).where(main.c.ingest_key.in_(chunk))):
            found[key] = record_id
    return found
