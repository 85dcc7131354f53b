"""The deliveries outbox: what a run must send after its commit, kept in a table until it is sent.

A run writes its resolved notifications (for Alertmanager) and its event copies (for OpenSearch) into
``delivery_outbox`` in the transaction that commits the run, so a delivery can be neither sent for a run
that did not commit nor lost by a failure or restart after it. ``Deliveries.flush`` then claims due rows
under a lease (so one process sends each), sends them in batches, and deletes what went; a failed batch
is retried with exponential back-off. Firing notifications are not kept: every run re-sends them.
Beyond ``backlog`` rows of a kind the oldest are dropped (and logged), so an endpoint away for days
cannot grow the table without bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from evaluator.engine.model import StoreError
from evaluator.engine.notify import Notification, Notifier, NotifyError
from evaluator.engine.tables import delivery_outbox
from evaluator.events import Event, EventStore, rfc3339, utc

log = logging.getLogger(__name__)

RESOLVED = "resolved"
EVENT_COPY = "event_copy"
RETRY_BACKLOG = 10_000
BATCH = 500


def notification_payload(note: Notification) -> dict[str, Any]:
    return {**note.to_json(), "resolved": note.resolved}


def notification_from(payload: dict[str, Any]) -> Notification:
    return Notification(
        labels=dict(payload["labels"]),
        annotations=dict(payload["annotations"]),
        starts_at=datetime.fromisoformat(payload["startsAt"]),
        ends_at=datetime.fromisoformat(payload["endsAt"]),
        resolved=bool(payload.get("resolved", True)),
    )


def event_payload(event: Event) -> dict[str, Any]:
    return {
        "time": rfc3339(event.time),
        "alert": event.alert,
        "description": event.description,
        "severity": event.severity,
        "record": dict(event.record),
        "type": event.type,
        "key": event.key,
        "summary": event.summary,
    }


def event_from(payload: dict[str, Any]) -> Event:
    return Event(
        time=datetime.fromisoformat(payload["time"]),
        alert=payload["alert"],
        description=payload["description"],
        severity=int(payload["severity"]),
        record=payload["record"],
        type=payload["type"],
        key=payload["key"],
        summary=payload["summary"],
    )


@dataclass(frozen=True)
class OutboxConfig:
    lease_ttl: timedelta = timedelta(seconds=60)
    backoff_initial: timedelta = timedelta(seconds=5)
    backoff_max: timedelta = timedelta(minutes=5)
    backlog: int = RETRY_BACKLOG


class Outbox:
    """The ``delivery_outbox`` table: add rows in a caller's transaction, claim, finish or fail them."""

    def __init__(
        self, engine: sa.Engine, *, owner: str, clock: Callable[[], datetime], config: OutboxConfig | None = None
    ) -> None:
        self._engine = engine
        self._owner = owner
        self._clock = clock
        self.config = config or OutboxConfig()

    def add(self, conn: sa.Connection, kind: str, payloads: Sequence[dict[str, Any]]) -> None:
        if not payloads:
            return
        now = utc(self._clock())
        conn.execute(
            delivery_outbox.insert(),
            [{"kind": kind, "payload": p, "created_at": now, "next_attempt": now, "attempts": 0} for p in payloads],
        )

    def claim(self, kind: str, limit: int = BATCH) -> list[tuple[int, int, dict[str, Any]]]:
        """Due rows of ``kind``, oldest first, leased to this process: ``(id, attempts, payload)``."""
        now = utc(self._clock())
        due = sa.and_(
            delivery_outbox.c.kind == kind,
            delivery_outbox.c.next_attempt <= now,
            sa.or_(delivery_outbox.c.lease_expires.is_(None), delivery_outbox.c.lease_expires < now),
        )
        with self._engine.begin() as conn:
            self._trim(conn, kind)
            ids = (
                sa.select(delivery_outbox.c.id)
                .where(due)
                .order_by(delivery_outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = conn.execute(
                delivery_outbox.update()
                .where(delivery_outbox.c.id.in_(ids), due)
                .values(lease_owner=self._owner, lease_expires=now + self.config.lease_ttl)
                .returning(delivery_outbox.c.id, delivery_outbox.c.attempts, delivery_outbox.c.payload)
            ).all()
        return sorted((r.id, r.attempts, r.payload) for r in rows)

    def done(self, ids: Sequence[int]) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                delivery_outbox.delete().where(
                    delivery_outbox.c.id.in_(ids), delivery_outbox.c.lease_owner == self._owner
                )
            )

    def failed(self, ids: Sequence[int], attempts: int, error: str) -> None:
        delay = min(self.config.backoff_max, self.config.backoff_initial * (2 ** min(attempts, 20)))
        with self._engine.begin() as conn:
            conn.execute(
                delivery_outbox.update()
                .where(delivery_outbox.c.id.in_(ids), delivery_outbox.c.lease_owner == self._owner)
                .values(
                    attempts=delivery_outbox.c.attempts + 1,
                    next_attempt=utc(self._clock()) + delay,
                    last_error=error[:1000],
                    lease_owner=None,
                    lease_expires=None,
                )
            )

    def pending(self, kind: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(delivery_outbox)
        if kind is not None:
            query = query.where(delivery_outbox.c.kind == kind)
        with self._engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def _trim(self, conn: sa.Connection, kind: str) -> None:
        keep_from = conn.scalar(
            sa.select(delivery_outbox.c.id)
            .where(delivery_outbox.c.kind == kind)
            .order_by(delivery_outbox.c.id.desc())
            .offset(self.config.backlog)
            .limit(1)
        )
        if keep_from is not None:
            dropped = conn.execute(
                delivery_outbox.delete().where(delivery_outbox.c.kind == kind, delivery_outbox.c.id <= keep_from)
            ).rowcount
            log.warning(
                "dropped the %d oldest undelivered %s deliveries (backlog over %d)", dropped, kind, self.config.backlog
            )


class Deliveries:
    """Sends what the outbox holds (and a run's firing notifications, never kept) to their endpoints."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        notifier: Notifier | None,
        event_sink: EventStore | None,
        on_notified: Callable[[str, int], None] = lambda _outcome, _count: None,
    ) -> None:
        self.outbox = outbox
        self._notifier = notifier
        self._event_sink = event_sink
        self._on_notified = on_notified  # metrics: ("ok" | "error", number of notifications)

    @property
    def notifies(self) -> bool:
        return self._notifier is not None

    @property
    def copies_events(self) -> bool:
        return self._event_sink is not None

    def keep(self, conn: sa.Connection, *, resolved: Sequence[Notification], events: Sequence[Event]) -> None:
        """In the run's transaction: what must reach the endpoints even if this process stops now."""
        if self._notifier is not None:
            self.outbox.add(conn, RESOLVED, [notification_payload(n) for n in resolved])
        if self._event_sink is not None:
            self.outbox.add(conn, EVENT_COPY, [event_payload(e) for e in events])

    def send_firing(self, notifications: Sequence[Notification]) -> None:
        """Firing notifications, sent at once; a failure is counted and not kept (the next run re-sends)."""
        if self._notifier is None or not notifications:
            return
        try:
            self._notifier.send(notifications)
        except NotifyError as exc:
            self._on_notified("error", len(notifications))
            log.warning("notification of %d firing instances failed (re-sent next run): %s", len(notifications), exc)
            return
        self._on_notified("ok", len(notifications))

    def flush(self) -> int:
        """Send the due outbox rows; returns how many went."""
        sent = 0
        if self._notifier is not None:
            sent += self._flush(RESOLVED, self._send_notifications)
        if self._event_sink is not None:
            sent += self._flush(EVENT_COPY, self._copy_events)
        return sent

    def _flush(self, kind: str, send: Callable[[list[dict[str, Any]]], None]) -> int:
        rows = self.outbox.claim(kind)
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        try:
            send([r[2] for r in rows])
        except (NotifyError, StoreError) as exc:
            self.outbox.failed(ids, max(r[1] for r in rows), str(exc))
            log.warning("%d %s deliveries kept in the outbox for retry: %s", len(rows), kind, exc)
            return 0
        self.outbox.done(ids)
        return len(rows)

    def _send_notifications(self, payloads: list[dict[str, Any]]) -> None:
        assert self._notifier is not None
        notes = [notification_from(p) for p in payloads]
        try:
            self._notifier.send(notes)
        except NotifyError:
            self._on_notified("error", len(notes))
            raise
        self._on_notified("ok", len(notes))

    def _copy_events(self, payloads: list[dict[str, Any]]) -> None:
        assert self._event_sink is not None
        self._event_sink.add([event_from(p) for p in payloads])
