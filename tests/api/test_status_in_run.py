"""A run's status commits in the run's transaction with its events (SQLite and PostgreSQL).

The status write is made to fail for real (its table renamed away): the run then stores no events, no
``alert_runs`` row and no schedule advance; once the table is back, the retried period stores events and
status together, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from api.db import make_engine
from api.resources import GLOBAL_ALERT, parse_object
from api.store import STATUS_TABLE, ObjectStore, SqlAlertRepository
from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.scheduler import Scheduler, SchedulerConfig
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.engine.tables import alert_runs, alert_schedule
from evaluator.events import events_table
from evaluator.logstore import insert_records
from tests.api.support import alert
from tests.evaluator.engine.engine_data import flow
from tests.evaluator.engine.engine_helpers import T0, FakeClock

LEASE = timedelta(seconds=30)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def make(
    engine: sa.Engine, clock: FakeClock, log_engine: sa.Engine | None = None
) -> tuple[Scheduler, SqlAlertRepository]:
    ObjectStore(engine, GLOBAL_ALERT, clock=clock).create(obj=parse_object(alert(), kind=GLOBAL_ALERT))
    repository = SqlAlertRepository(engine)
    scheduler = Scheduler(
        engine=engine,
        repository=repository,
        log_store=SqlLogStore(log_engine or engine),
        config=SchedulerConfig(sync_interval=0, spread=False, lease_ttl=LEASE, workers=1),
        clock=clock,
        metrics=EngineMetrics(CollectorRegistry()),
        owner="test",
        status_in_run=repository,
    )
    with engine.begin() as conn:
        denied = [flow(T0 - timedelta(minutes=1), action="deny", dest_port=22, source_namespace="dev")] * 3
        insert_records(conn, "flows", denied)
    return scheduler, repository


def counts(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "events": conn.scalar(sa.select(sa.func.count()).select_from(events_table)),
            "runs": conn.scalar(sa.select(sa.func.count()).select_from(alert_runs)),
            "next_run": conn.scalar(sa.select(alert_schedule.c.next_run)),
        }


def rename_status_table(engine: sa.Engine, old: str, new: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_a_failing_status_write_stores_no_events(engine: sa.Engine) -> None:
    clock = FakeClock(T0)
    scheduler, repository = make(engine, clock)
    scheduler.sync()  # the schedule row and the pending status, before the status table goes
    before = counts(engine)
    name = STATUS_TABLE.name
    rename_status_table(engine, name, "status_away")
    try:
        with pytest.raises(sa.exc.DBAPIError):  # the scheduler loop logs it and retries with back-off
            scheduler.step()
        after = counts(engine)
    finally:
        rename_status_table(engine, "status_away", name)
    assert after == before and after["events"] == 0 and after["runs"] == 0
    status = repository.get_status("ssh-deny")
    assert status is not None and status.executionState == "pending"

    # The status table is back: the same period runs again (after the back-off) and stores events and
    # status together, once.
    clock.advance(timedelta(minutes=1))
    assert scheduler.step() == 1
    done = counts(engine)
    assert done["events"] == 1 and done["runs"] == 1 and done["next_run"] != before["next_run"]
    status = repository.get_status("ssh-deny")
    assert status is not None and status.executionState == "executed" and status.healthy
    assert status.lastEvent is not None and status.lastExecuted == clock.now
    scheduler.step()  # nothing due: nothing twice
    assert counts(engine) == done


def test_a_failed_run_writes_its_status_with_the_schedule_retry(engine: sa.Engine, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    away = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'logs.db'}")  # a directory that is not there
    scheduler, repository = make(engine, clock, log_engine=away)
    assert scheduler.step() == 1
    status = repository.get_status("ssh-deny")
    assert status is not None and status.executionState == "failed" and not status.healthy
    assert [c.type for c in status.errorConditions] == ["StoreUnavailable"]
    with engine.connect() as conn:
        row = conn.execute(sa.select(alert_schedule)).one()
    assert row.failures == 1 and row.lease_owner is None and row.last_error == status.errorConditions[0].message
    assert counts(engine)["events"] == 0
