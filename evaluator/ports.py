"""Plug points between the evaluator (scheduler, engine) and the storage of alert objects.

The API implements ``AlertRepository`` over SQL (``api.store.SqlAlertRepository``); the scheduler only
reads specs and writes status through it. Status has its own rows: ``write_status`` never touches a
spec, and spec writes through the API never touch status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa

from evaluator.alerts import AlertStatus, GlobalAlertSpec


@dataclass(frozen=True)
class StoredAlert:
    """A GlobalAlert as stored: its validated spec and the bookkeeping the scheduler needs.

    ``generation`` grows on every spec change (a PUT that changes nothing keeps it); ``resourceVersion``
    grows on every write of the object. ``updated`` is when the spec last changed.
    """

    name: str
    spec: GlobalAlertSpec
    uid: str
    resourceVersion: str
    generation: int
    created: datetime
    updated: datetime


class AlertRepository(Protocol):
    """Read GlobalAlerts, write their status."""

    def list_alerts(self) -> list[StoredAlert]:
        """Every GlobalAlert, ordered by name."""
        ...

    def get_alert(self, name: str) -> StoredAlert | None:
        """One GlobalAlert, or None when it does not exist (any more)."""
        ...

    def get_status(self, name: str) -> AlertStatus | None:
        """The last written status, or None when the scheduler never wrote one."""
        ...

    def write_status(self, name: str, status: AlertStatus) -> None:
        """Replace the alert's status (keeping the newest ``MAX_ERROR_CONDITIONS`` error conditions).

        Does nothing when the alert does not exist (it may have been deleted meanwhile); never
        changes the spec, resourceVersion or generation.
        """
        ...


class StatusInTransaction(Protocol):
    """Status read and written in the caller's open transaction on the scheduler's own database, so a
    run's events and its status commit together (``api.store.SqlAlertRepository``)."""

    def read_status(self, conn: sa.Connection, name: str) -> AlertStatus | None:
        """As ``AlertRepository.get_status``, within ``conn``'s transaction."""
        ...

    def put_status(self, conn: sa.Connection, name: str, status: AlertStatus) -> None:
        """As ``AlertRepository.write_status``, within ``conn``'s transaction (nothing when the alert is gone)."""
        ...
