"""Ingest keys without an index of their own on the hot path: the content hash in the time index.

Every record stored through ``_bulk`` without an ``_id`` had a unique ``ingest_key`` (``hash:`` + 32 hex
digits) in an index of its own, which every insert wrote at a random place: the largest part of a bulk
request's cost. Now the content hash's first 64 bits are ``ingest_hash``, unique together with the
record's time in the time index (which every insert writes anyway); ``ingest_key`` keeps only ``id:``
keys, in a partial unique index over the rows that have one. Existing ``hash:`` keys move to
``ingest_hash`` (a retry of a record stored before this revision is still recognised); the downgrade
writes them back as ``hash:`` + 16 hex digits (records stored then are no longer recognised by a retry
after the downgrade, the old code hashing 32).

Revision ID: 0011_ingest_hash
Revises: 0010_values_unlinked
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011_ingest_hash"
down_revision: str | None = "0010_values_unlinked"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME_COLUMNS = {"audit": "requestreceivedtimestamp", "dns": "end_time", "flows": "end_time"}
CHUNK = 10_000


def _signed(hex_digits: str) -> int:
    value = int(hex_digits, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def _rewrite(
    conn: sa.Connection, table: str, column: str, where: str, update: str, convert: Callable[[Any], Any]
) -> None:
    """``update`` (``:v``, ``:i``) every row matching ``where`` with ``convert`` of its ``column``, ``CHUNK``
    rows at a time in id order, so a large log store is never read into memory at once."""
    select = sa.text(f"SELECT id, {column} FROM {table} WHERE {where} AND id > :after ORDER BY id LIMIT {CHUNK}")
    after = -1
    while rows := conn.execute(select, {"after": after}).all():
        conn.execute(sa.text(update), [{"v": convert(value), "i": record_id} for record_id, value in rows])
        after = rows[-1][0]


def upgrade() -> None:
    conn = op.get_bind()
    for dataset, time_column in TIME_COLUMNS.items():
        table = f"logstore_{dataset}"
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("ingest_hash", sa.BigInteger(), nullable=True))
        op.drop_index(op.f(f"ix_{table}_ingest_key"), table_name=table)
        op.drop_index(op.f(f"ix_{table}_{time_column}"), table_name=table)
        _rewrite(
            conn,
            table,
            "ingest_key",
            "ingest_key LIKE 'hash:%'",
            f"UPDATE {table} SET ingest_hash = :v, ingest_key = NULL WHERE id = :i",
            lambda key: _signed(key[5:21]),
        )
        op.create_index(op.f(f"ix_{table}_{time_column}"), table, [time_column, "ingest_hash"], unique=True)
        with_id = sa.text("ingest_key IS NOT NULL")
        op.create_index(
            op.f(f"ix_{table}_ingest_key"),
            table,
            ["ingest_key"],
            unique=True,
            sqlite_where=with_id,
            postgresql_where=with_id,
        )


def downgrade() -> None:
    conn = op.get_bind()
    for dataset, time_column in TIME_COLUMNS.items():
        table = f"logstore_{dataset}"
        op.drop_index(op.f(f"ix_{table}_ingest_key"), table_name=table)
        op.drop_index(op.f(f"ix_{table}_{time_column}"), table_name=table)
        _rewrite(
            conn,
            table,
            "ingest_hash",
            "ingest_hash IS NOT NULL",
            f"UPDATE {table} SET ingest_key = :v WHERE id = :i",
            lambda digest: f"hash:{digest & ((1 << 64) - 1):016x}",
        )
        with op.batch_alter_table(table) as batch:
            batch.drop_column("ingest_hash")
        op.create_index(op.f(f"ix_{table}_{time_column}"), table, [time_column], unique=False)
        op.create_index(op.f(f"ix_{table}_ingest_key"), table, ["ingest_key"], unique=True)
