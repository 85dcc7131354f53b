"""Retention deletes embedded log records (with their values) and events past their age, nothing newer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from evaluator.db import metadata
from evaluator.engine.retention import Retention
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.engine.tables import alert_instances, alert_runs
from evaluator.events import Event, SqlEventStore, events_table
from evaluator.logstore import insert_records, table_for, values_table_for
from tests.evaluator.engine.engine_data import dns, flow
from tests.evaluator.engine.engine_helpers import T0, FakeClock


def test_old_logs_and_events_go(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/r.db")
    metadata.create_all(engine)
    with engine.begin() as conn:
        insert_records(conn, "flows", [flow(T0 - timedelta(days=8)), flow(T0 - timedelta(days=6))])
        insert_records(conn, "dns", [dns(T0 - timedelta(days=9))])
    events = SqlEventStore(engine)
    events.add(
        [
            Event(time=T0 - timedelta(days=31), alert="a", description="old", severity=1, record={}, key="1"),
            Event(time=T0 - timedelta(days=1), alert="a", description="new", severity=1, record={}, key="2"),
        ]
    )
    with engine.begin() as conn:
        for days, alert in ((2, "old"), (0.5, "new")):
            at = T0 - timedelta(days=days)
            conn.execute(
                alert_runs.insert().values(
                    alert=alert, scheduled_for=at, owner="x", started_at=at, finished_at=at, events=0, findings=0
                )
            )
        for state, days in (("resolved", 40), ("resolved", 5), ("firing", 40)):
            at = T0 - timedelta(days=days)
            conn.execute(
                alert_instances.insert().values(
                    alert="a",
                    key_hash=f"{state}{days}",
                    key="",
                    state=state,
                    record={},
                    description="",
                    severity=1,
                    started_at=at,
                    last_seen_at=at,
                    resolved_at=at if state == "resolved" else None,
                )
            )
    retention = Retention(
        engine=engine,
        log_store=SqlLogStore(engine),
        events=events,
        keep_logs=timedelta(days=7),
        keep_events=timedelta(days=30),
        interval=timedelta(minutes=10),
        clock=FakeClock(T0),
    )
    removed = retention.run_once()
    assert (removed["flows"], removed["dns"], removed["audit"], removed["events"]) == (1, 1, 0, 1)
    assert (removed["runs"], removed["instances"]) == (1, 1)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(table_for("flows"))) == 1
        assert conn.scalar(sa.select(sa.func.count()).select_from(table_for("dns"))) == 0
        orphans = conn.scalar(
            sa.select(sa.func.count())
            .select_from(values_table_for("flows"))
            .where(values_table_for("flows").c.record_id.not_in(sa.select(table_for("flows").c.id)))
        )
        assert orphans == 0
        assert list(conn.scalars(sa.select(events_table.c.description))) == ["new"]
        assert list(conn.scalars(sa.select(alert_runs.c.alert))) == ["new"]
        assert sorted(conn.scalars(sa.select(alert_instances.c.key_hash))) == ["firing40", "resolved5"]
    assert retention.run_once()["flows"] == 0
    engine.dispose()
