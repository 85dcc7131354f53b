"""The scheduler over the real embedded log store on PostgreSQL: no duplicate events across overlapping
windows, resolution and re-firing, a log database that goes down and comes back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from evaluator.db import metadata
from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.scheduler import Scheduler, SchedulerConfig
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.engine.tables import alert_instances, alert_runs
from evaluator.events import events_table, utc
from evaluator.logstore import insert_records
from tests.evaluator.engine.engine_data import audit, flow
from tests.evaluator.engine.engine_helpers import T0, FakeClock, MemoryRepository, spec

pytestmark = pytest.mark.postgres
MIN = timedelta(minutes=1)


@pytest.fixture
def engine(pg_database: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(pg_database)
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def make(
    engine: sa.Engine, log_engine: sa.Engine | None = None, **config: Any
) -> tuple[Scheduler, FakeClock, MemoryRepository]:
    clock = FakeClock()
    repo = MemoryRepository()
    scheduler = Scheduler(
        engine=engine,
        repository=repo,
        log_store=SqlLogStore(log_engine or engine),
        config=SchedulerConfig(**{"sync_interval": 0, "spread": False, **config}),
        clock=clock,
        metrics=EngineMetrics(CollectorRegistry()),
        owner="test",
    )
    return scheduler, clock, repo


def ingest(engine: sa.Engine, dataset: str, records: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        insert_records(conn, dataset, records)


def events(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(events_table).order_by(events_table.c.id)))


def test_per_hit_records_are_reported_once_across_overlapping_windows(engine: sa.Engine) -> None:
    scheduler, clock, repo = make(engine)
    repo.put(
        "deletes",
        spec(
            description="${user.username} deleted ${objectRef.name}",
            dataSet="audit",
            period=MIN,
            lookback=5 * MIN,
            query="verb=delete",
            aggregateBy=(),
            metric=None,
            condition=None,
            threshold=None,
        ),
    )
    ingest(engine, "audit", [audit(T0 - 30 * timedelta(seconds=1), auditID="a1")])
    for minute in range(8):
        if minute == 3:
            # Flushed late: its time lies in windows that already ran, but within the next lookback.
            ingest(engine, "audit", [audit(T0 + timedelta(seconds=90), auditID="late", user={"username": "bob"})])
        scheduler.step()
        clock.advance(MIN)
    got = [(e.record["auditID"], e.description, utc(e.time)) for e in events(engine)]
    assert got == [("a1", "alice deleted deny-all", T0), ("late", "bob deleted deny-all", T0 + 3 * MIN)]


def test_instances_fire_once_resolve_and_fire_again(engine: sa.Engine) -> None:
    scheduler, clock, repo = make(engine)
    repo.put(
        "busy",
        spec(
            description="${source_namespace} sent ${sum} flows",
            period=MIN,
            lookback=3 * MIN,
            aggregateBy=("source_namespace",),
            field="num_flows",
            metric="sum",
            condition="gte",
            threshold=5.0,
        ),
    )
    # Busy from T0-30s to T0+90s (windows of the runs at T0..T0+4m cover it), quiet, busy again at T0+6m30.
    ingest(engine, "flows", [flow(T0 + timedelta(seconds=s), source_namespace="shop", num_flows=5) for s in (-30, 90)])
    ingest(engine, "flows", [flow(T0 + timedelta(seconds=390), source_namespace="shop", num_flows=9)])
    for _ in range(10):
        scheduler.step()
        clock.advance(MIN)
    got = [(utc(e.time), e.description) for e in events(engine)]
    assert got == [(T0, "shop sent 5 flows"), (T0 + 7 * MIN, "shop sent 9 flows")]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alert_instances.c.state, alert_instances.c.started_at, alert_instances.c.resolved_at).order_by(
                alert_instances.c.id
            )
        ).all()
    assert [(r.state, utc(r.started_at), r.resolved_at and utc(r.resolved_at)) for r in rows] == [
        ("resolved", T0, T0 + 5 * MIN),
        ("firing", T0 + 7 * MIN, None),
    ]


def test_log_database_down_and_back(engine: sa.Engine, postgres_server: Any) -> None:
    logs_url = postgres_server.create_database("logs_" + engine.url.database[2:])  # type: ignore[index]
    logs_name = sa.make_url(logs_url).database
    log_engine = sa.create_engine(logs_url)
    metadata.create_all(log_engine)
    try:
        ingest(log_engine, "flows", [flow(T0 - MIN, source_namespace="shop")])
        scheduler, clock, repo = make(engine, log_engine, backoff_initial=timedelta(seconds=5))
        repo.put("a", spec(period=MIN, lookback=5 * MIN))
        postgres_server.psql(f'ALTER DATABASE "{logs_name}" WITH ALLOW_CONNECTIONS false')
        postgres_server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{logs_name}'")
        scheduler.step()
        status = repo.status["a"]
        assert not status.healthy
        assert status.errorConditions[0].type == "StoreUnavailable"
        assert logs_name in status.errorConditions[0].message
        clock.advance(2 * MIN)  # down for two periods
        scheduler.step()
        assert not repo.status["a"].healthy
        postgres_server.psql(f'ALTER DATABASE "{logs_name}" WITH ALLOW_CONNECTIONS true')
        clock.advance(timedelta(seconds=11))
        scheduler.step()
        assert repo.status["a"].healthy
        with engine.connect() as conn:
            runs = [
                utc(t) for t in conn.scalars(sa.select(alert_runs.c.scheduled_for).order_by(alert_runs.c.scheduled_for))
            ]
        assert runs == [T0, T0 + MIN, T0 + 2 * MIN]  # every period ran once the store was back
        assert [e.description for e in events(engine)] == ["count 1 for shop"]
    finally:
        log_engine.dispose()
