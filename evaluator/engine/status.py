"""The status the scheduler writes for each alert (``executionState``, health, error conditions)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from evaluator.alerts import AlertStatus, ErrorCondition
from evaluator.events import utc
from evaluator.ports import AlertRepository

PENDING = "pending"
EXECUTED = "executed"
CATCHING_UP = "catching_up"
FAILED = "failed"


class StatusWriter:
    def __init__(self, repository: AlertRepository, *, clock: Callable[[], datetime], max_catchup: int) -> None:
        self._repository = repository
        self._clock = clock
        self._max_catchup = max_catchup

    def pending(self, name: str, now: datetime) -> None:
        self._repository.write_status(
            name, AlertStatus(lastUpdate=now, active=True, healthy=True, executionState=PENDING)
        )

    def retired(self, name: str) -> None:
        self._write(name, active=False, healthy=True, state=EXECUTED, errors=())

    def failed(self, name: str, error_type: str, message: str) -> None:
        self._write(name, active=True, healthy=False, state=FAILED, errors=(ErrorCondition(error_type, message),))

    def ran(
        self, name: str, *, scheduled: datetime, started: datetime, period: timedelta, skipped: int, wrote: bool
    ) -> None:
        """After a committed run: executed, or catching up when a later period was already due at its start."""
        errors: tuple[ErrorCondition, ...] = ()
        previous = self._repository.get_status(name)
        if previous is not None and previous.executionState == CATCHING_UP:
            # A skip is reported until the catch-up it happened in is over, then cleared by the next run.
            errors = tuple(c for c in previous.errorConditions if c.type == "CatchUpLimit")
        if skipped:
            errors += (
                ErrorCondition(
                    "CatchUpLimit",
                    f"skipped {skipped} missed period(s) before {scheduled.isoformat()}: at most "
                    f"{self._max_catchup} are caught up after downtime",
                ),
            )
        behind = started - scheduled >= period
        self._write(
            name,
            active=True,
            healthy=True,
            state=CATCHING_UP if behind else EXECUTED,
            errors=errors,
            event_at=scheduled if wrote else None,
            previous=previous,
        )

    def _write(
        self,
        name: str,
        *,
        active: bool,
        healthy: bool,
        state: str,
        errors: tuple[ErrorCondition, ...],
        event_at: datetime | None = None,
        previous: AlertStatus | None = None,
    ) -> None:
        now = utc(self._clock())
        if previous is None:
            previous = self._repository.get_status(name)
        status = AlertStatus(
            lastUpdate=now,
            active=active,
            healthy=healthy,
            executionState=state,
            lastExecuted=now if state != PENDING else (previous.lastExecuted if previous else None),
            lastEvent=event_at or (previous.lastEvent if previous else None),
            errorConditions=errors,
        )
        self._repository.write_status(name, status)
