"""Events carry the alert's summary (Calico's ``spec.summary``, filled in like the description).

Revision ID: 0004_summary
Revises: 0003_engine
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_summary"
down_revision: str | None = "0003_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Events written before this revision read their description as summary ("" means "the description").
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("summary")
