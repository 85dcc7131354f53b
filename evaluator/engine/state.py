"""Alert instances and reported hits in SQL, read and written inside the scheduler's run transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import datetime, timedelta

import sqlalchemy as sa

from evaluator.engine.instances import Instance, Transitions
from evaluator.engine.tables import alert_instances, alert_seen_hits
from evaluator.events import utc

FIRING = "firing"
RESOLVED = "resolved"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_firing(conn: sa.Connection, alert: str) -> dict[str, Instance]:
    rows = conn.execute(
        sa.select(alert_instances).where(alert_instances.c.alert == alert, alert_instances.c.state == FIRING)
    )
    return {
        r.key: Instance(
            alert=r.alert,
            key=r.key,
            record=r.record,
            description=r.description,
            started=utc(r.started_at),
            severity=r.severity,
            value=r.value,
        )
        for r in rows
    }


def load_seen(conn: sa.Connection, alert: str, keys: Collection[str]) -> set[str]:
    if not keys:
        return set()
    seen: set[str] = set()
    wanted = list(keys)
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        seen.update(
            conn.scalars(
                sa.select(alert_seen_hits.c.hit_id).where(
                    alert_seen_hits.c.alert == alert, alert_seen_hits.c.hit_id.in_(chunk)
                )
            )
        )
    return seen


def apply(conn: sa.Connection, alert: str, transitions: Transitions, *, lookback: timedelta) -> None:
    at = utc(transitions.at)
    if transitions.resolved:
        conn.execute(
            alert_instances.update()
            .where(
                alert_instances.c.alert == alert,
                alert_instances.c.state == FIRING,
                alert_instances.c.key_hash.in_([key_hash(i.key) for i in transitions.resolved]),
            )
            .values(state=RESOLVED, resolved_at=at)
        )
    if transitions.started:
        conn.execute(
            alert_instances.insert(),
            [
                {
                    "alert": alert,
                    "key_hash": key_hash(i.key),
                    "key": i.key,
                    "state": FIRING,
                    "record": dict(i.record),
                    "description": i.description,
                    "severity": i.severity,
                    "value": i.value,
                    "started_at": at,
                    "last_seen_at": at,
                }
                for i in transitions.started
            ],
        )
    if transitions.continuing:
        conn.execute(
            alert_instances.update()
            .where(
                alert_instances.c.alert == alert,
                alert_instances.c.state == FIRING,
                alert_instances.c.key_hash.in_([key_hash(f.key) for f in transitions.continuing]),
            )
            .values(last_seen_at=at)
        )
    if transitions.new_hits:
        conn.execute(
            alert_seen_hits.insert(),
            [{"alert": alert, "hit_id": f.key, "hit_time": utc(f.hit_time or at)} for f in transitions.new_hits],
        )
    conn.execute(
        alert_seen_hits.delete().where(
            alert_seen_hits.c.alert == alert, alert_seen_hits.c.hit_time <= utc(at - lookback)
        )
    )


def resolve_all(conn: sa.Connection, alert: str, at: datetime) -> list[Instance]:
    """Resolve every firing instance of ``alert`` (deleted) and forget its reported hits."""
    firing = list(load_firing(conn, alert).values())
    conn.execute(
        alert_instances.update()
        .where(alert_instances.c.alert == alert, alert_instances.c.state == FIRING)
        .values(state=RESOLVED, resolved_at=utc(at))
    )
    conn.execute(alert_seen_hits.delete().where(alert_seen_hits.c.alert == alert))
    return firing


def firing_counts(conn: sa.Connection) -> dict[str, int]:
    rows = conn.execute(
        sa.select(alert_instances.c.alert, sa.func.count())
        .where(alert_instances.c.state == FIRING)
        .group_by(alert_instances.c.alert)
    )
    return {r[0]: int(r[1]) for r in rows}
