"""Ingest keys of log records: a retried bulk request stores nothing twice.

Each main log-store table gets ``ingest_key`` (``id:`` + the document's ``_id``, or ``hash:`` + a hash
of the record's content) with a unique index; records stored before this revision have none.

Revision ID: 0005_ingest_dedup
Revises: 0004_summary
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ingest_dedup"
down_revision: str | None = "0004_summary"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATASETS = ("audit", "dns", "flows")
KEY_LENGTH = 516  # "id:" / "hash:" + up to 512 bytes (Elasticsearch's _id limit)


def upgrade() -> None:
    for dataset in DATASETS:
        table = f"logstore_{dataset}"
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("ingest_key", sa.String(length=KEY_LENGTH), nullable=True))
        op.create_index(op.f(f"ix_{table}_ingest_key"), table, ["ingest_key"], unique=True)


def downgrade() -> None:
    for dataset in DATASETS:
        table = f"logstore_{dataset}"
        op.drop_index(op.f(f"ix_{table}_ingest_key"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("ingest_key")
