"""Tables of alert objects: GlobalAlerts, GlobalAlertTemplates, and GlobalAlert status in its own rows.

The spec is stored as the validated, normalised JSON the API returns. Status rows belong to the
scheduler; the API writes specs, so neither can clobber the other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
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
