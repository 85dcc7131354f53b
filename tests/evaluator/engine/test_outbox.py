"""The deliveries outbox (issue 16.1): resolved notifications and event copies that could not be sent
are kept in ``delivery_outbox``, committed with their run, so a scheduler that restarts (a new process,
a new owner) sends them; on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.model import Bucket, StoreError
from evaluator.engine.notify import Notification, NotifyError
from evaluator.engine.outbox import EVENT_COPY, RESOLVED
from evaluator.engine.scheduler import Scheduler, SchedulerConfig
from evaluator.engine.tables import delivery_outbox
from evaluator.events import Event, EventPage, EventQuery
from tests.evaluator.engine.engine_helpers import (
    T0,
    FakeClock,
    MemoryRepository,
    ScriptedStore,
    create_engine_tables,
    spec,
)

MINUTE = timedelta(minutes=1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'outbox.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    eng = sa.create_engine(url)
    create_engine_tables(eng)
    yield eng
    eng.dispose()


class Endpoint:
    """Alertmanager and the event index at once: refuses while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[Notification] = []
        self.events: list[Event] = []

    def send(self, notifications: Sequence[Notification]) -> None:
        if self.down:
            raise NotifyError("alertmanager unreachable (test)")
        self.sent.extend(notifications)

    def add(self, events: Sequence[Event]) -> int:
        if self.down:
            raise StoreError("event index unreachable (test)")
        self.events.extend(events)
        return len(events)

    def search(self, query: EventQuery) -> EventPage:
        raise NotImplementedError


def _scheduler(
    engine: sa.Engine, repo: MemoryRepository, store: ScriptedStore, clock: FakeClock, endpoint: Endpoint, owner: str
) -> Scheduler:
    return Scheduler(
        engine=engine,
        repository=repo,
        log_store=store,
        notifier=endpoint,
        event_sink=endpoint,
        config=SchedulerConfig(sync_interval=0, spread=False, backoff_initial=timedelta(seconds=5)),
        clock=clock,
        metrics=EngineMetrics(CollectorRegistry()),
        owner=owner,
    )


def _pending(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(delivery_outbox.c.kind, sa.func.count()).group_by(delivery_outbox.c.kind))
        return {r[0]: r[1] for r in rows}


def test_undelivered_resolutions_and_event_copies_survive_a_restart(engine: sa.Engine) -> None:
    clock, repo, store, endpoint = FakeClock(), MemoryRepository(), ScriptedStore(), Endpoint()
    store.buckets = lambda w: [Bucket(("ns1",), 1)] if w.end == T0 else []
    repo.put("a", spec())
    first = _scheduler(engine, repo, store, clock, endpoint, "first")
    endpoint.down = True
    first.step()  # fires: its event copy is kept
    clock.advance(MINUTE)
    first.step()  # resolves: the resolution is kept
    assert _pending(engine) == {RESOLVED: 1, EVENT_COPY: 1}
    del first  # the process goes away; what it could not send is in the table, not in its memory

    endpoint.down = False
    clock.advance(2 * MINUTE)  # after the retry back-off
    second = _scheduler(engine, repo, store, clock, endpoint, "second")
    second.step()
    assert [(n.labels["source_namespace"], n.resolved, n.ends_at) for n in endpoint.sent] == [
        ("ns1", True, T0 + MINUTE)
    ]
    assert [(e.alert, e.record, e.time) for e in endpoint.events] == [
        ("a", {"source_namespace": "ns1", "count": 1.0}, T0)
    ]
    assert _pending(engine) == {}
    second.step()
    assert len(endpoint.sent) == 1 and len(endpoint.events) == 1  # sent once


def test_a_failed_delivery_waits_for_its_back_off(engine: sa.Engine) -> None:
    clock, repo, store, endpoint = FakeClock(), MemoryRepository(), ScriptedStore(), Endpoint()
    store.buckets = lambda w: [Bucket(("ns1",), 1)] if w.end == T0 else []
    repo.put("a", spec())
    scheduler = _scheduler(engine, repo, store, clock, endpoint, "only")
    endpoint.down = True
    scheduler.step()
    endpoint.down = False
    scheduler.deliveries.flush()  # at once: still in its back-off, nothing is sent
    assert endpoint.events == []
    clock.advance(timedelta(seconds=5))
    assert scheduler.deliveries.flush() == 1
    assert len(endpoint.events) == 1
