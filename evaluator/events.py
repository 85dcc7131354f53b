"""Events (the "Alerts page" records) and the SQL event store.

An event is written when an alert instance starts firing (or, for an alert without aggregation and metric,
once per matching log record). Its JSON form is the contract: ``type``, ``time``, ``alert``,
``summary``, ``description``, ``severity``, ``record``. ``summary`` is the alert's ``spec.summary`` filled
in, or its description's text when the alert has none (Calico's rule).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from evaluator.db import metadata

EVENT_TYPE = "global_alert"

events_table = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("alert", sa.String(253), nullable=False),
    sa.Column("severity", sa.Integer(), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("summary", sa.Text(), nullable=False, server_default=""),
    sa.Column("record", sa.JSON(), nullable=False),
    # sha256 of (alert, time, instance key): a second write of the same event is refused by the database.
    sa.Column("dedup", sa.String(64), nullable=False, unique=True),
    # Acknowledged on the Alerts page (or by the API): who and when; both NULL while the event is open.
    sa.Column("dismissed_by", sa.String(253), nullable=True),
    sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_events_alert_time", "alert", "time"),
    sa.Index("ix_events_time", "time"),
)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite hands back naive UTC values)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime, *, timespec: str = "auto") -> str:
    """``value`` in UTC as RFC 3339 with a ``Z``: microseconds kept where present (events, status), or
    ``timespec="seconds"`` where Kubernetes metadata has whole seconds (``creationTimestamp``)."""
    return utc(value).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Dismissal:
    """An acknowledgement: the event leaves the default view of the Alerts page."""

    by: str
    at: datetime

    def to_json(self) -> dict[str, str]:
        return {"by": self.by, "at": rfc3339(self.at)}


@dataclass(frozen=True, slots=True)
class Event:
    time: datetime
    alert: str
    description: str
    severity: int
    record: Mapping[str, Any]
    type: str = EVENT_TYPE
    key: str = field(default="", compare=False)  # the alert instance (or hit) it reports; not in the JSON
    summary: str = ""  # "" reads as the description (events written before summaries existed)
    id: str = field(default="", compare=False)  # the stored dedup key, read back (the OpenSearch document id)
    dismissed: Dismissal | None = field(default=None, compare=False)

    @property
    def dedup(self) -> str:
        raw = f"{self.alert}\x00{rfc3339(self.time)}\x00{self.key}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "time": rfc3339(self.time),
            "alert": self.alert,
            "summary": self.summary or self.description,
            "description": self.description,
            "severity": self.severity,
            "record": dict(self.record),
        }


@dataclass(frozen=True, slots=True)
class EventQuery:
    alert: str | None = None
    severity: int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    limit: int = 100
    offset: int = 0
    severity_min: int | None = None  # inclusive
    severity_max: int | None = None  # inclusive
    alerts: tuple[str, ...] | None = None  # any of these alerts (e.g. those of one data set); () matches none
    dismissed: bool | None = None  # None: both
    order: str = "time"  # "time": newest first; "severity": highest first, then newest


@dataclass(frozen=True, slots=True)
class EventPage:
    items: tuple[Event, ...]
    total: int


class EventStore(Protocol):
    def add(self, events: Sequence[Event]) -> int:
        """Store events; an event already stored (same alert, time and instance) is skipped. Returns added."""
        ...

    def search(self, query: EventQuery) -> EventPage: ...

    def dismiss(self, event_id: str, dismissal: Dismissal) -> Event | None:
        """Mark one event dismissed (a second dismissal keeps the first); None when there is no such event."""
        ...


def insert_events(conn: sa.Connection, events: Iterable[Event]) -> int:
    """Insert inside the caller's transaction (the scheduler commits events with the run's bookkeeping)."""
    rows = [
        {
            "type": e.type,
            "time": utc(e.time),
            "alert": e.alert,
            "severity": e.severity,
            "description": e.description,
            "summary": e.summary or e.description,
            "record": dict(e.record),
            "dedup": e.dedup,
        }
        for e in events
    ]
    if not rows:
        return 0
    existing = set(
        conn.scalars(sa.select(events_table.c.dedup).where(events_table.c.dedup.in_([r["dedup"] for r in rows])))
    )
    fresh = [r for r in rows if r["dedup"] not in existing]
    if fresh:
        conn.execute(events_table.insert(), fresh)
    return len(fresh)


def _filters(query: EventQuery) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if query.alert is not None:
        clauses.append(events_table.c.alert == query.alert)
    if query.severity is not None:
        clauses.append(events_table.c.severity == query.severity)
    if query.since is not None:
        clauses.append(events_table.c.time >= utc(query.since))
    if query.until is not None:
        clauses.append(events_table.c.time < utc(query.until))
    if query.severity_min is not None:
        clauses.append(events_table.c.severity >= query.severity_min)
    if query.severity_max is not None:
        clauses.append(events_table.c.severity <= query.severity_max)
    if query.alerts is not None:
        clauses.append(events_table.c.alert.in_(query.alerts) if query.alerts else sa.false())
    if query.dismissed is not None:
        column = events_table.c.dismissed_at
        clauses.append(column.is_not(None) if query.dismissed else column.is_(None))
    return clauses


def _order(query: EventQuery) -> list[sa.UnaryExpression[Any]]:
    newest = [events_table.c.time.desc(), events_table.c.id.desc()]
    return [events_table.c.severity.desc(), *newest] if query.order == "severity" else newest


def search_events(conn: sa.Connection, query: EventQuery) -> EventPage:
    where = _filters(query)
    total = conn.scalar(sa.select(sa.func.count()).select_from(events_table).where(*where)) or 0
    rows = conn.execute(
        sa.select(events_table).where(*where).order_by(*_order(query)).limit(query.limit).offset(query.offset)
    )
    return EventPage(items=tuple(_event(r) for r in rows), total=int(total))


def _event(row: sa.Row[Any]) -> Event:
    dismissed = None
    if row.dismissed_at is not None:
        dismissed = Dismissal(by=row.dismissed_by or "", at=utc(row.dismissed_at))
    return Event(
        time=utc(row.time),
        alert=row.alert,
        description=row.description,
        severity=row.severity,
        record=row.record,
        type=row.type,
        summary=row.summary or row.description,
        id=row.dedup,
        dismissed=dismissed,
    )


def dismiss_event(conn: sa.Connection, event_id: str, dismissal: Dismissal) -> Event | None:
    conn.execute(
        events_table.update()
        .where(events_table.c.dedup == event_id, events_table.c.dismissed_at.is_(None))
        .values(dismissed_by=dismissal.by, dismissed_at=utc(dismissal.at))
    )
    row = conn.execute(sa.select(events_table).where(events_table.c.dedup == event_id)).first()
    return None if row is None else _event(row)


class SqlEventStore:
    """The embedded event store: the ``events`` table of the evaluator's database."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def add(self, events: Sequence[Event]) -> int:
        with self._engine.begin() as conn:
            return insert_events(conn, events)

    def search(self, query: EventQuery) -> EventPage:
        with self._engine.connect() as conn:
            return search_events(conn, query)

    def dismiss(self, event_id: str, dismissal: Dismissal) -> Event | None:
        with self._engine.begin() as conn:
            return dismiss_event(conn, event_id, dismissal)

    def delete_before(self, cutoff: datetime) -> int:
        with self._engine.begin() as conn:
            return conn.execute(events_table.delete().where(events_table.c.time < utc(cutoff))).rowcount
