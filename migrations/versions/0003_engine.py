"""Alert engine: events, alert instances, reported hits, the schedule with leases, committed runs.

Revision ID: 0003_engine
Revises: 0002_logstore
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_engine"
down_revision: str | None = "0002_logstore"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("alert", sa.String(length=253), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("dedup", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("dedup", name=op.f("uq_events_dedup")),
    )
    op.create_index("ix_events_alert_time", "events", ["alert", "time"])
    op.create_index("ix_events_time", "events", ["time"])

    op.create_table(
        "alert_instances",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("alert", sa.String(length=253), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
        sa.Column("resolved_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_instances")),
    )
    op.create_index("ix_alert_instances_alert_state", "alert_instances", ["alert", "state"])

    op.create_table(
        "alert_seen_hits",
        sa.Column("alert", sa.String(length=253), nullable=False),
        sa.Column("hit_id", sa.String(length=255), nullable=False),
        sa.Column("hit_time", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("alert", "hit_id", name=op.f("pk_alert_seen_hits")),
    )
    op.create_index("ix_alert_seen_hits_alert_hit_time", "alert_seen_hits", ["alert", "hit_time"])

    op.create_table(
        "alert_schedule",
        sa.Column("alert", sa.String(length=253), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("next_run", _TIME, nullable=False),
        sa.Column("retry_at", _TIME, nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("alert", name=op.f("pk_alert_schedule")),
    )
    op.create_index("ix_alert_schedule_next_run", "alert_schedule", ["next_run"])

    op.create_table(
        "alert_runs",
        sa.Column("alert", sa.String(length=253), nullable=False),
        sa.Column("scheduled_for", _TIME, nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("alert", "scheduled_for", name=op.f("pk_alert_runs")),
    )
    op.create_index("ix_alert_runs_finished_at", "alert_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_runs_finished_at", table_name="alert_runs")
    op.drop_table("alert_runs")
    op.drop_index("ix_alert_schedule_next_run", table_name="alert_schedule")
    op.drop_table("alert_schedule")
    op.drop_index("ix_alert_seen_hits_alert_hit_time", table_name="alert_seen_hits")
    op.drop_table("alert_seen_hits")
    op.drop_index("ix_alert_instances_alert_state", table_name="alert_instances")
    op.drop_table("alert_instances")
    op.drop_index("ix_events_time", table_name="events")
    op.drop_index("ix_events_alert_time", table_name="events")
    op.drop_table("events")
