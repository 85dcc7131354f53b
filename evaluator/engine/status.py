"""The status the scheduler writes for each alert (``executionState``, health, error conditions).

With a repository that can join a transaction (``StatusInTransaction``: the SQL repository over the
scheduler's own database) a run's status is written in the run's transaction, with its events: both
commit or neither does. Otherwise (GlobalAlerts in Kubernetes) it is written after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from evaluator.alerts import AlertStatus, ErrorCondition
from evaluator.events import utc
from evaluator.ports import AlertRepository, StatusInTransaction

PENDING = "pending"
EXECUTED = "executed"
CATCHING_UP = "catching_up"
FAILED = "failed"


def ran_status(
    previous: AlertStatus | None,
    *,
    now: datetime,
    scheduled: datetime,
    started: datetime,
    period: timedelta,
    skipped: int,
    wrote: bool,
    max_catchup: int,
) -> AlertStatus:
    """After a committed run: executed, or catching up when a later period was already due at its start."""
    errors: tuple[ErrorCondition, ...] = ()
    if previous is not None and previous.executionState == CATCHING_UP:
        # A skip is reported until the catch-up it happened in is over, then cleared by the next run.
        errors = tuple(c for c in previous.errorConditions if c.type == "CatchUpLimit")
    if skipped:
        errors += (
            ErrorCondition(
                "CatchUpLimit",
                f"skipped {skipped} missed period(s) before {scheduled.isoformat()}: at most "
                f"{max_catchup} are caught up after downtime",
            ),
        )
    behind = started - scheduled >= period
    return _status(
        previous,
        now=now,
        active=True,
        healthy=True,
        state=CATCHING_UP if behind else EXECUTED,
        errors=errors,
        event_at=scheduled if wrote else None,
    )


def failed_status(previous: AlertStatus | None, *, now: datetime, error_type: str, message: str) -> AlertStatus:
    return _status(
        previous, now=now, active=True, healthy=False, state=FAILED, errors=(ErrorCondition(error_type, message),)
    )


def _status(
    previous: AlertStatus | None,
    *,
    now: datetime,
    active: bool,
    healthy: bool,
    state: str,
    errors: tuple[ErrorCondition, ...],
    event_at: datetime | None = None,
) -> AlertStatus:
    return AlertStatus(
        lastUpdate=now,
        active=active,
        healthy=healthy,
        executionState=state,
        lastExecuted=now if state != PENDING else (previous.lastExecuted if previous else None),
        lastEvent=event_at or (previous.lastEvent if previous else None),
        errorConditions=errors,
    )


class StatusWriter:
    def __init__(
        self,
        repository: AlertRepository,
        *,
        clock: Callable[[], datetime],
        max_catchup: int,
        in_transaction: StatusInTransaction | None = None,
    ) -> None:
        self._repository = repository
        self._clock = clock
        self._max_catchup = max_catchup
        self._in_transaction = in_transaction

    @property
    def joins_transactions(self) -> bool:
        """Whether ``ran``/``failed`` take the run's open connection (else they write on their own)."""
        return self._in_transaction is not None

    def pending(self, name: str, now: datetime) -> None:
        self._repository.write_status(
            name, AlertStatus(lastUpdate=now, active=True, healthy=True, executionState=PENDING)
        )

    def retired(self, name: str) -> None:
        now = utc(self._clock())
        previous = self._repository.get_status(name)
        self._repository.write_status(
            name, _status(previous, now=now, active=False, healthy=True, state=EXECUTED, errors=())
        )

    def failed(self, name: str, error_type: str, message: str, *, conn: sa.Connection | None = None) -> None:
        self._put(
            name, conn, lambda previous, now: failed_status(previous, now=now, error_type=error_type, message=message)
        )

    def ran(
        self,
        name: str,
        conn: sa.Connection | None,
        written: int,
        *,
        scheduled: datetime,
        started: datetime,
        period: timedelta,
        skipped: int,
    ) -> None:
        """A committed run's status, in its transaction (``conn``) or after it (None); ``written`` events."""
        self._put(
            name,
            conn,
            lambda previous, now: ran_status(
                previous,
                now=now,
                scheduled=scheduled,
                started=started,
                period=period,
                skipped=skipped,
                wrote=bool(written),
                max_catchup=self._max_catchup,
            ),
        )

    def _put(
        self,
        name: str,
        conn: sa.Connection | None,
        make: Callable[[AlertStatus | None, datetime], AlertStatus],
    ) -> None:
        now = utc(self._clock())
        if conn is not None and self._in_transaction is not None:
            self._in_transaction.put_status(conn, name, make(self._in_transaction.read_status(conn, name), now))
        else:
            self._repository.write_status(name, make(self._repository.get_status(name), now))
