"""The engine's own tables (migration 0003_engine): instances, reported hits, the schedule with leases, runs."""

from __future__ import annotations

import sqlalchemy as sa

from evaluator.db import metadata

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)

alert_instances = sa.Table(
    "alert_instances",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("alert", sa.String(253), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("key", sa.Text(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # firing | resolved
    sa.Column("record", sa.JSON(), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("severity", sa.Integer(), nullable=False),
    sa.Column("value", sa.Float(), nullable=True),
    sa.Column("started_at", _TIME, nullable=False),
    sa.Column("last_seen_at", _TIME, nullable=False),
    sa.Column("resolved_at", _TIME, nullable=True),
    sa.Index("ix_alert_instances_alert_state", "alert", "state"),
)

# Log records an alert without aggregation already reported, kept while a later window can still see them.
alert_seen_hits = sa.Table(
    "alert_seen_hits",
    metadata,
    sa.Column("alert", sa.String(253), primary_key=True),
    sa.Column("hit_id", sa.String(255), primary_key=True),
    sa.Column("hit_time", _TIME, nullable=False),
    sa.Index("ix_alert_seen_hits_alert_hit_time", "alert", "hit_time"),
)

# One row per alert: the next period to run and who holds it. A process claims due rows by setting a lease
# (SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL); the run commits only while it still holds the lease,
# in the same transaction that advances next_run, so each alert-period commits exactly once.
alert_schedule = sa.Table(
    "alert_schedule",
    metadata,
    sa.Column("alert", sa.String(253), primary_key=True),
    sa.Column("generation", sa.Integer(), nullable=False),
    sa.Column("next_run", _TIME, nullable=False),
    sa.Column("retry_at", _TIME, nullable=True),
    sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires", _TIME, nullable=True),
    sa.Index("ix_alert_schedule_next_run", "next_run"),
)

# Every committed alert-period; the primary key makes a second commit of the same period impossible.
alert_runs = sa.Table(
    "alert_runs",
    metadata,
    sa.Column("alert", sa.String(253), primary_key=True),
    sa.Column("scheduled_for", _TIME, primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("started_at", _TIME, nullable=False),
    sa.Column("finished_at", _TIME, nullable=False),
    sa.Column("events", sa.Integer(), nullable=False),
    sa.Column("findings", sa.Integer(), nullable=False),
    sa.Index("ix_alert_runs_finished_at", "finished_at"),
)

# Deliveries a run committed but that go out after the commit (resolved notifications to Alertmanager,
# event copies to OpenSearch), written in the run's own transaction: a failed delivery is retried with
# back-off, and a restart loses none. Claimed under a lease like the schedule, so one process sends each.
delivery_outbox = sa.Table(
    "delivery_outbox",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),  # resolved | event_copy
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt", _TIME, nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires", _TIME, nullable=True),
    sa.Index("ix_delivery_outbox_kind_next_attempt", "kind", "next_attempt"),
)
