"""Tables of alert objects: GlobalAlerts, GlobalAlertTemplates, and GlobalAlert status in its own rows.

The spec is stored as the validated, normalised JSON the API returns. Status rows belong to the
scheduler; the API writes specs, so neither can clobber the other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evaluator.db import Base

NAME_LENGTH = 253


class _ObjectColumns:
    """Columns shared by both stored kinds: Kubernetes-style metadata plus the spec as JSON."""

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    resource_version: Mapped[int] = mapped_column(Integer, nullable=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class GlobalAlertRow(_ObjectColumns, Base):
    __tablename__ = "global_alerts"


class GlobalAlertTemplateRow(_ObjectColumns, Base):
    __tablename__ = "global_alert_templates"


class GlobalAlertStatusRow(Base):
    __tablename__ = "global_alert_status"

    name: Mapped[str] = mapped_column(
        String(NAME_LENGTH), ForeignKey("global_alerts.name", ondelete="CASCADE"), primary_key=True
    )
    last_update: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    healthy: Mapped[bool] = mapped_column(Boolean, nullable=False)
    execution_state: Mapped[str] = mapped_column(Text, nullable=False)
    last_executed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_conditions: Mapped[list[dict[str, str]]] = mapped_column(JSON, nullable=False)


class ResourceVersionRow(Base):
    """The one counter every object write draws its resourceVersion from (row ``id = 1``).

    Incrementing it is a write transaction's first statement, so writers queue on this row: versions are
    unique across the store's history (a re-created object never repeats one) and ascend in commit order,
    which lets a watch read changes by version without missing one. ``compacted`` is the oldest version
    a watch may still start from (older changes were pruned).
    """

    __tablename__ = "resource_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    current: Mapped[int] = mapped_column(BigInteger, nullable=False)
    compacted: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ResourceChangeRow(Base):
    """One write (ADDED, MODIFIED, DELETED) of either kind, for ``?watch=true``; pruned to a window."""

    __tablename__ = "resource_changes"

    resource_version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    object: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
