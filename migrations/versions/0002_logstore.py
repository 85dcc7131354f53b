"""Embedded log store: flows, dns and audit records, one main table and one values table each.

Revision ID: 0002_logstore
Revises: 0001_initial
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_logstore"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The single-valued keys of each data set as they were at this revision (column name, kind); later
# changes to evaluator.logstore.tables need a migration of their own.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "audit": (
        ("apiversion", "text"),
        ("auditid", "text"),
        ("kind", "text"),
        ("level", "text"),
        ("name", "text"),
        ("objectref_apigroup", "text"),
        ("objectref_apiversion", "text"),
        ("objectref_name", "text"),
        ("objectref_resource", "text"),
        ("objectref_namespace", "text"),
        ("requestreceivedtimestamp", "date"),
        ("requesturi", "text"),
        ("responseobject_apiversion", "text"),
        ("responseobject_kind", "text"),
        ("responsestatus_code", "int"),
        ("stage", "text"),
        ("stagetimestamp", "date"),
        ("timestamp", "date"),
        ("user_username", "text"),
        ("verb", "text"),
    ),
    "dns": (
        ("start_time", "date"),
        ("end_time", "date"),
        ("count", "int"),
        ("client_name", "text"),
        ("client_name_aggr", "text"),
        ("client_namespace", "text"),
        ("client_ip", "ip"),
        ("qname", "text"),
        ("qtype", "text"),
        ("rclass", "text"),
        ("rcode", "text"),
    ),
    "flows": (
        ("start_time", "date"),
        ("end_time", "date"),
        ("action", "text"),
        ("bytes_in", "int"),
        ("bytes_out", "int"),
        ("dest_ip", "ip"),
        ("dest_name", "text"),
        ("dest_name_aggr", "text"),
        ("dest_namespace", "text"),
        ("dest_port", "int"),
        ("dest_type", "text"),
        ("reporter", "text"),
        ("num_flows", "int"),
        ("num_flows_completed", "int"),
        ("num_flows_started", "int"),
        ("http_requests_allowed_in", "int"),
        ("http_requests_denied_in", "int"),
        ("packets_in", "int"),
        ("packets_out", "int"),
        ("proto", "text"),
        ("source_ip", "ip"),
        ("source_name", "text"),
        ("source_name_aggr", "text"),
        ("source_namespace", "text"),
        ("source_port", "int"),
        ("source_type", "text"),
        ("num_original_source_ips", "int"),
    ),
}
TIME_COLUMN = {"audit": "requestreceivedtimestamp", "dns": "end_time", "flows": "end_time"}


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ip_key() -> sa.types.TypeEngine[str]:
    return sa.String(length=33).with_variant(sa.String(length=33, collation="C"), "postgresql")


def _columns(kind: str, name: str) -> list[sa.Column[object]]:
    if kind == "int":
        return [sa.Column(name, sa.BigInteger(), nullable=True)]
    if kind == "date":
        return [sa.Column(name, sa.Double(), nullable=True)]
    if kind == "ip":
        return [
            sa.Column(name, sa.String(length=64), nullable=True),
            sa.Column(f"{name}_ipkey", _ip_key(), nullable=True),
        ]
    return [sa.Column(name, sa.Text(), nullable=True)]


def upgrade() -> None:
    for dataset, columns in COLUMNS.items():
        main = f"logstore_{dataset}"
        values = f"logstore_{dataset}_values"
        op.create_table(
            main,
            sa.Column("id", _id(), autoincrement=True, nullable=False),
            *(column for name, kind in columns for column in _columns(kind, name)),
            sa.Column("record", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{main}")),
        )
        time_column = TIME_COLUMN[dataset]
        op.create_index(op.f(f"ix_{main}_{time_column}"), main, [time_column], unique=False)
        op.create_table(
            values,
            sa.Column("id", _id(), autoincrement=True, nullable=False),
            sa.Column("record_id", _id(), nullable=False),
            sa.Column("key", sa.Text(), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("ip_key", _ip_key(), nullable=True),
            sa.ForeignKeyConstraint(
                ["record_id"], [f"{main}.id"], name=op.f(f"fk_{values}_record_id_{main}"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{values}")),
        )
        op.create_index(op.f(f"ix_{values}_record_id"), values, ["record_id", "key"], unique=False)
        op.create_index(op.f(f"ix_{values}_key"), values, ["key", "ip_key"], unique=False)


def downgrade() -> None:
    for dataset in reversed(tuple(COLUMNS)):
        op.drop_table(f"logstore_{dataset}_values")
        op.drop_table(f"logstore_{dataset}")
