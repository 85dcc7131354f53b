"""Events can be dismissed (acknowledged) from the Alerts page or the API: who and when.

Revision ID: 0007_event_dismissal
Revises: 0004_summary
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_event_dismissal"
down_revision: str | None = "0005_ingest_dedup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Both NULL: the event is open (every event written before this revision).
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("dismissed_by", sa.String(253), nullable=True))
        batch.add_column(sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("dismissed_at")
        batch.drop_column("dismissed_by")
