"""resourceVersion from one global counter (unique across history, as Kubernetes has it) and a change log
for ``?watch=true``.

Existing objects are renumbered above every version issued so far, so a version a client still holds
never names another object's state.

Revision ID: 0009_resource_versions
Revises: 0008_outbox
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_resource_versions"
down_revision: str | None = "0008_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OBJECT_TABLES = ("global_alerts", "global_alert_templates")


def upgrade() -> None:
    op.create_table(
        "resource_versions",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("current", sa.BigInteger(), nullable=False),
        sa.Column("compacted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_versions")),
    )
    op.create_table(
        "resource_changes",
        sa.Column("resource_version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("object", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("resource_version", name=op.f("pk_resource_changes")),
    )
    connection = op.get_bind()
    highest = 0
    for table in OBJECT_TABLES:
        value = connection.execute(sa.text(f"SELECT max(resource_version) FROM {table}")).scalar()
        highest = max(highest, int(value or 0))
    for table in OBJECT_TABLES:
        names = connection.execute(sa.text(f"SELECT name FROM {table} ORDER BY name")).scalars().all()
        for name in names:
            highest += 1
            connection.execute(
                sa.text(f"UPDATE {table} SET resource_version = :rv WHERE name = :name"),
                {"rv": highest, "name": name},
            )
    connection.execute(
        sa.text("INSERT INTO resource_versions (id, current, compacted) VALUES (1, :rv, :rv)"), {"rv": highest}
    )


def downgrade() -> None:
    op.drop_table("resource_changes")
    op.drop_table("resource_versions")
