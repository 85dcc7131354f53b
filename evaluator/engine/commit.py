"""``commit_run``: everything one alert-period produces, in one transaction that first checks the lease.

Schedule advance, instance state, events, the ``alert_runs`` row, the outbox rows of the deliveries
(resolved notifications, event copies) and (with a SQL repository) the alert's status commit together or
not at all, so a period commits exactly once, nothing it must deliver can be lost between its commit and
the delivery, and the status never says a run happened whose events are not stored, or the reverse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from evaluator.alerts import GlobalAlertSpec
from evaluator.engine import state
from evaluator.engine.instances import Instance, Transitions, track
from evaluator.engine.model import RunResult
from evaluator.engine.notify import Notification, notifications_for, resolved_notifications
from evaluator.engine.outbox import Deliveries
from evaluator.engine.schedule import Claim, ScheduleTable
from evaluator.engine.tables import alert_runs
from evaluator.events import insert_events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed:
    """What a committed run changed, for what follows the commit (metrics, firing notifications, status)."""

    transitions: Transitions
    firing_before: dict[str, Instance]
    written: int
    firing: list[Notification]  # to send now (never kept: the next run re-sends them)

    @property
    def firing_now(self) -> int:
        return len(self.firing_before) - len(self.transitions.resolved) + len(self.transitions.started)


class _LostLease(Exception):
    pass


def commit_run(
    engine: sa.Engine,
    *,
    schedule: ScheduleTable,
    deliveries: Deliveries,
    claim: Claim,
    spec: GlobalAlertSpec,
    result: RunResult,
    scheduled: datetime,
    started: datetime,
    next_run: datetime,
    owner: str,
    finished: datetime,
    status: Callable[[sa.Connection, int], None] | None = None,
) -> Committed | None:
    """Commit the run of ``claim``'s period; None when another process already committed it.

    ``status(conn, events_written)`` writes the alert's status in the same transaction.
    """
    try:
        with engine.begin() as conn:
            if not schedule.advance(conn, claim, next_run):
                raise _LostLease
            firing = state.load_firing(conn, claim.alert)
            seen = state.load_seen(conn, claim.alert, [f.key for f in result.findings]) if result.per_hit else set()
            transitions = track(
                alert=claim.alert, severity=spec.severity, at=scheduled, result=result, firing=firing, seen_hits=seen
            )
            written = insert_events(conn, transitions.events)
            state.apply(conn, claim.alert, transitions, lookback=spec.lookback)
            conn.execute(
                alert_runs.insert().values(
                    alert=claim.alert,
                    scheduled_for=scheduled,
                    owner=owner,
                    started_at=started,
                    finished_at=finished,
                    events=written,
                    findings=len(result.findings),
                )
            )
            notes = []
            if deliveries.notifies:
                notes = notifications_for(
                    alert=claim.alert,
                    severity=spec.severity,
                    aggregate_by=spec.aggregateBy,
                    period=spec.period,
                    transitions=transitions,
                    firing_before=firing,
                )
            deliveries.keep(conn, resolved=[n for n in notes if n.resolved], events=transitions.events)
            if status is not None:
                status(conn, written)
    except _LostLease:
        log.info("alert %s period %s: lease lost to another process; its run counts", claim.alert, scheduled)
        return None
    except sa.exc.IntegrityError:
        log.warning("alert %s period %s was already committed; skipped", claim.alert, scheduled)
        return None
    return Committed(transitions, firing, written, [n for n in notes if not n.resolved])


def retire(engine: sa.Engine, *, deliveries: Deliveries, name: str, now: datetime) -> None:
    """A deleted alert: its schedule row goes, and its firing instances resolve (notified via the outbox)."""
    with engine.begin() as conn:
        resolved = state.resolve_all(conn, name, now) if ScheduleTable.remove(conn, name) else []
        deliveries.keep(conn, resolved=resolved_notifications(alert=name, instances=resolved, at=now), events=())
