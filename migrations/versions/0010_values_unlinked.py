"""Cheaper writes of log records' values rows: no foreign key, one index.

Each ``logstore_<dataset>_values`` row was checked against its record on insert (a foreign key with
ON DELETE CASCADE) and written to three B-trees (the row, ``(record_id, key)``, ``(key, ip_key)``).
Every delete of records removes their values explicitly (retention, an ``index`` replacing a record),
and queries reach values through their record (``record_id = id``), so the foreign key and the
``(key, ip_key)`` index go: ingest writes a record's values at about half the cost. Rows are kept as
they are (SQLite copies the table, PostgreSQL drops the constraint in place).

Revision ID: 0010_values_unlinked
Revises: 0009_resource_versions
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_values_unlinked"
down_revision: str | None = "0009_resource_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATASETS = ("audit", "dns", "flows")


def upgrade() -> None:
    for dataset in DATASETS:
        table = f"logstore_{dataset}_values"
        op.drop_index(op.f(f"ix_{table}_key"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"fk_{table}_record_id_logstore_{dataset}"), type_="foreignkey")


def downgrade() -> None:
    for dataset in DATASETS:
        table = f"logstore_{dataset}_values"
        # Values whose record is gone (none, unless written outside policywatch) would refuse the key.
        op.execute(sa.text(f"DELETE FROM {table} WHERE record_id NOT IN (SELECT id FROM logstore_{dataset})"))
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.create_foreign_key(
                op.f(f"fk_{table}_record_id_logstore_{dataset}"),
                f"logstore_{dataset}",
                ["record_id"],
                ["id"],
                ondelete="CASCADE",
            )
        op.create_index(op.f(f"ix_{table}_key"), table, ["key", "ip_key"], unique=False)
