"""Initial schema: GlobalAlerts, GlobalAlertTemplates, and GlobalAlert status in its own rows.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OBJECT_TABLES = ("global_alerts", "global_alert_templates")


def _object_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
    ]


def upgrade() -> None:
    for table in OBJECT_TABLES:
        op.create_table(
            table,
            *_object_columns(),
            sa.PrimaryKeyConstraint("name", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("uid", name=op.f(f"uq_{table}_uid")),
        )
    op.create_table(
        "global_alert_status",
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("last_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("execution_state", sa.Text(), nullable=False),
        sa.Column("last_executed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_conditions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["name"],
            ["global_alerts.name"],
            name=op.f("fk_global_alert_status_name_global_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_global_alert_status")),
    )


def downgrade() -> None:
    op.drop_table("global_alert_status")
    for table in reversed(OBJECT_TABLES):
        op.drop_table(table)
