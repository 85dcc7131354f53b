"""The ``alert_schedule`` table: one row per alert with its next period, claimed under a lease.

Every write here is one short transaction (or a statement in the caller's, for ``advance``): the
scheduler's loop in ``scheduler.py`` decides what to do, this module only says it in SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from evaluator.engine.tables import alert_schedule
from evaluator.events import utc
from evaluator.ports import StoredAlert

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Claim:
    alert: str
    next_run: datetime
    failures: int


def next_slot(alert: str, scheduled: datetime, period: timedelta, *, spread: bool) -> datetime:
    """The run after ``scheduled``: ``+ period``, or with ``spread`` the alert's next slot after it (a hash
    of its name within the period, as Prometheus spreads rule groups), at most a period later, so
    consecutive windows never leave a gap."""
    if not spread:
        return scheduled + period
    period_us = max(1, round(period / timedelta(microseconds=1)))
    offset_us = int.from_bytes(hashlib.sha256(alert.encode()).digest()[:8], "big") % period_us
    since_epoch_us = round((scheduled - _EPOCH) / timedelta(microseconds=1))
    slot = (since_epoch_us - offset_us) // period_us + 1
    return _EPOCH + timedelta(microseconds=slot * period_us + offset_us)


def run_after(alert: str, scheduled: datetime, started: datetime, period: timedelta, *, spread: bool) -> datetime:
    """The next run: the next slot after ``scheduled``. A prompt run (first, or after an edit) is off the
    alert's slots; when it started late (many alerts created at once), the slot after its start is taken,
    so the lateness of a burst is not carried into the next round. Windows still overlap while lookback
    exceeds period plus that lateness."""
    if not spread or next_slot(alert, scheduled - period, period, spread=True) == scheduled:
        return next_slot(alert, scheduled, period, spread=spread)
    return next_slot(alert, max(scheduled, started), period, spread=True)


class ScheduleTable:
    def __init__(self, engine: sa.Engine, *, owner: str, clock: Callable[[], datetime], lease_ttl: timedelta) -> None:
        self._engine = engine
        self._owner = owner
        self._clock = clock
        self._lease_ttl = lease_ttl

    def generations(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(alert_schedule.c.alert, alert_schedule.c.generation))
            return {r.alert: r.generation for r in rows}

    def add(self, alerts: Iterable[StoredAlert], now: datetime) -> list[str]:
        """Rows for new alerts, due ``now``; returns the names this process added (not another)."""
        values = [{"alert": a.name, "generation": a.generation, "next_run": now, "failures": 0} for a in alerts]
        if not values:
            return []
        with self._engine.begin() as conn:
            return list(conn.scalars(_insert_ignore(conn, alert_schedule).returning(alert_schedule.c.alert), values))

    def reschedule(self, name: str, generation: int, now: datetime) -> None:
        """An edited alert runs promptly with its new spec (its failures and back-off forgotten)."""
        with self._engine.begin() as conn:
            least = sa.func.least if conn.dialect.name == "postgresql" else sa.func.min
            conn.execute(
                alert_schedule.update()
                .where(alert_schedule.c.alert == name, alert_schedule.c.generation != generation)
                .values(
                    generation=generation, next_run=least(alert_schedule.c.next_run, now), retry_at=None, failures=0
                )
            )

    @staticmethod
    def remove(conn: sa.Connection, name: str) -> bool:
        return bool(conn.execute(alert_schedule.delete().where(alert_schedule.c.alert == name)).rowcount)

    def claim(self, limit: int) -> list[Claim]:
        now = utc(self._clock())
        due = sa.and_(
            alert_schedule.c.next_run <= now,
            sa.or_(alert_schedule.c.retry_at.is_(None), alert_schedule.c.retry_at <= now),
            sa.or_(alert_schedule.c.lease_expires.is_(None), alert_schedule.c.lease_expires < now),
        )
        with self._engine.begin() as conn:
            candidates = (
                sa.select(alert_schedule.c.alert)
                .where(due)
                .order_by(alert_schedule.c.next_run)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = conn.execute(
                alert_schedule.update()
                .where(alert_schedule.c.alert.in_(candidates), due)
                .values(lease_owner=self._owner, lease_expires=now + self._lease_ttl)
                .returning(alert_schedule.c.alert, alert_schedule.c.next_run, alert_schedule.c.failures)
            ).all()
        return sorted((Claim(r.alert, utc(r.next_run), r.failures) for r in rows), key=lambda c: c.next_run)

    def advance(self, conn: sa.Connection, claim: Claim, next_run: datetime) -> bool:
        """In the run's transaction: the period is done, if this process still holds the lease."""
        updated = conn.execute(
            alert_schedule.update()
            .where(
                alert_schedule.c.alert == claim.alert,
                alert_schedule.c.lease_owner == self._owner,
                alert_schedule.c.next_run == claim.next_run,
            )
            .values(next_run=next_run, failures=0, retry_at=None, last_error=None, lease_owner=None, lease_expires=None)
        ).rowcount
        return bool(updated == 1)

    def fail(
        self,
        claim: Claim,
        *,
        retry_at: datetime,
        message: str,
        also: Callable[[sa.Connection], None] | None = None,
    ) -> None:
        """Release the lease with a retry time; ``also(conn)`` writes in the same transaction (the status)."""
        with self._engine.begin() as conn:
            conn.execute(
                alert_schedule.update()
                .where(alert_schedule.c.alert == claim.alert, alert_schedule.c.lease_owner == self._owner)
                .values(
                    failures=alert_schedule.c.failures + 1,
                    retry_at=retry_at,
                    last_error=message,
                    lease_owner=None,
                    lease_expires=None,
                )
            )
            if also is not None:
                also(conn)

    def release(self, claim: Claim) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                alert_schedule.update()
                .where(alert_schedule.c.alert == claim.alert, alert_schedule.c.lease_owner == self._owner)
                .values(lease_owner=None, lease_expires=None)
            )

    def earliest_due(self) -> datetime | None:
        """When the next alert-period falls due (to sleep until then)."""
        with self._engine.connect() as conn:
            value = conn.scalar(
                sa.select(
                    sa.func.min(
                        sa.case(
                            (alert_schedule.c.retry_at > alert_schedule.c.next_run, alert_schedule.c.retry_at),
                            else_=alert_schedule.c.next_run,
                        )
                    )
                )
            )
        return None if value is None else utc(value)


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> sa.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return table.insert()
