"""The deliveries outbox: resolved notifications and event copies that failed stay in a table, not in memory.

Revision ID: 0008_outbox
Revises: 0004_summary
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_outbox"
down_revision: str | None = "0007_event_dismissal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "delivery_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt", _TIME, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_outbox")),
    )
    op.create_index("ix_delivery_outbox_kind_next_attempt", "delivery_outbox", ["kind", "next_attempt"])


def downgrade() -> None:
    op.drop_index("ix_delivery_outbox_kind_next_attempt", table_name="delivery_outbox")
    op.drop_table("delivery_outbox")
