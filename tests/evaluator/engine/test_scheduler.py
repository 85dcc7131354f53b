"""The scheduler on a real PostgreSQL with a fake clock: prompt first run, periods, catch-up, back-off,
instances resolving, deleted alerts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.model import Bucket, StoreError, Window
from evaluator.engine.notify import Notification, NotifyError
from evaluator.engine.scheduler import Scheduler, SchedulerConfig
from evaluator.engine.tables import alert_instances, alert_runs
from evaluator.events import Event, EventPage, EventQuery, events_table, utc
from tests.evaluator.engine.engine_helpers import (
    T0,
    FakeClock,
    MemoryRepository,
    ScriptedStore,
    create_engine_tables,
    spec,
)

pytestmark = pytest.mark.postgres
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


@pytest.fixture
def engine(pg_database: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(pg_database)
    create_engine_tables(eng)
    yield eng
    eng.dispose()


class Rig:
    def __init__(self, engine: sa.Engine, notifier: object = None, event_sink: object = None, **config: object) -> None:
        self.engine = engine
        self.clock = FakeClock()
        self.repo = MemoryRepository()
        self.store = ScriptedStore()
        self.registry = CollectorRegistry()
        self.scheduler = Scheduler(
            engine=engine,
            repository=self.repo,
            log_store=self.store,
            notifier=notifier,  # type: ignore[arg-type]
            event_sink=event_sink,  # type: ignore[arg-type]
            config=SchedulerConfig(**{"sync_interval": 0, "spread": False, **config}),  # type: ignore[arg-type]
            clock=self.clock,
            metrics=EngineMetrics(self.registry),
            owner="test",
        )

    def runs(self, alert: str) -> list[object]:
        with self.engine.connect() as conn:
            return [
                utc(t)
                for t in conn.scalars(
                    sa.select(alert_runs.c.scheduled_for)
                    .where(alert_runs.c.alert == alert)
                    .order_by(alert_runs.c.scheduled_for)
                )
            ]

    def events(self) -> list[sa.Row[object]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(events_table).order_by(events_table.c.id)))

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def test_first_run_is_prompt_then_every_period(engine: sa.Engine) -> None:
    rig = Rig(engine)
    rig.repo.put("a", spec())
    assert rig.scheduler.step() == 1
    assert rig.runs("a") == [T0]
    assert rig.store.windows == [Window(T0 - 2 * MINUTE, T0)]
    status = rig.repo.status["a"]
    assert (status.active, status.healthy, status.executionState) == (True, True, "executed")
    assert status.lastExecuted == T0
    rig.clock.advance(timedelta(seconds=59))
    assert rig.scheduler.step() == 0
    rig.clock.advance(timedelta(seconds=1))
    assert rig.scheduler.step() == 1
    assert rig.runs("a") == [T0, T0 + MINUTE]
    assert rig.metric("policywatch_evaluator_alert_runs_total", alert="a", outcome="ok") == 2
    assert rig.metric("policywatch_evaluator_alerts") == 1


def test_missed_periods_are_caught_up_in_order_up_to_the_limit(engine: sa.Engine) -> None:
    rig = Rig(engine, max_catchup=3)
    rig.repo.put("a", spec())
    rig.scheduler.step()
    rig.clock.advance(2 * MINUTE + timedelta(seconds=10))  # T0+1m and T0+2m are due
    assert rig.scheduler.step() == 2
    assert rig.runs("a") == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    rig.clock.advance(10 * MINUTE)  # T0+3m .. T0+12m due: only the newest 3 run
    rig.scheduler.step()
    assert rig.runs("a")[3:] == [T0 + 10 * MINUTE, T0 + 11 * MINUTE, T0 + 12 * MINUTE]
    status = rig.repo.status["a"]
    assert status.healthy
    assert [c.type for c in status.errorConditions] == ["CatchUpLimit"]
    assert "skipped 7 missed period" in status.errorConditions[0].message


def test_store_down_makes_the_alert_unhealthy_and_the_period_is_retried_with_backoff(engine: sa.Engine) -> None:
    rig = Rig(engine, backoff_initial=timedelta(seconds=10), backoff_max=timedelta(seconds=30))
    rig.repo.put("a", spec())
    rig.store.down = True
    rig.scheduler.step()
    status = rig.repo.status["a"]
    assert (status.healthy, status.executionState) == (False, "failed")
    assert status.errorConditions[0].type == "StoreUnavailable"
    assert "connection refused" in status.errorConditions[0].message
    assert rig.metric("policywatch_evaluator_alert_healthy", alert="a") == 0
    rig.clock.advance(timedelta(seconds=9))
    assert rig.scheduler.step() == 0  # backing off
    rig.clock.advance(timedelta(seconds=1))
    assert rig.scheduler.step() == 1  # retried at 10 s, fails again: next back-off 20 s
    rig.clock.advance(timedelta(seconds=19))
    assert rig.scheduler.step() == 0
    rig.store.down = False
    rig.clock.advance(timedelta(seconds=1))
    assert rig.scheduler.step() == 1
    assert rig.runs("a") == [T0]  # the period that failed is the one that ran: nothing lost
    assert rig.repo.status["a"].healthy
    assert rig.repo.status["a"].errorConditions == ()
    assert rig.metric("policywatch_evaluator_alert_runs_total", alert="a", outcome="error") == 2


def test_instances_fire_once_and_resolve(engine: sa.Engine) -> None:
    rig = Rig(engine)
    answers = {
        T0: [Bucket(("ns1",), 3), Bucket(("ns2",), 1)],
        T0 + MINUTE: [Bucket(("ns1",), 5)],
        T0 + 2 * MINUTE: [Bucket(("ns1",), 2), Bucket(("ns2",), 4)],
    }
    rig.store.buckets = lambda w: answers.get(w.end, [])
    rig.repo.put("a", spec())
    for _ in range(3):
        rig.scheduler.step()
        rig.clock.advance(MINUTE)
    events = rig.events()
    assert [(utc(e.time), e.record, e.description) for e in events] == [
        (T0, {"source_namespace": "ns1", "count": 3.0}, "count 3 for ns1"),
        (T0, {"source_namespace": "ns2", "count": 1.0}, "count 1 for ns2"),
        (T0 + 2 * MINUTE, {"source_namespace": "ns2", "count": 4.0}, "count 4 for ns2"),
    ]
    assert all(e.type == "global_alert" and e.alert == "a" and e.severity == 40 for e in events)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alert_instances.c.record, alert_instances.c.state, alert_instances.c.resolved_at).order_by(
                alert_instances.c.id
            )
        ).all()
    assert [(r.record["source_namespace"], r.state) for r in rows] == [
        ("ns1", "firing"),
        ("ns2", "resolved"),
        ("ns2", "firing"),
    ]
    assert utc(rows[1].resolved_at) == T0 + MINUTE
    assert rig.metric("policywatch_evaluator_firing_instances", alert="a") == 2
    assert rig.metric("policywatch_evaluator_events_total", alert="a", severity="40") == 3
    assert rig.repo.status["a"].lastEvent == T0 + 2 * MINUTE


def test_deleted_alert_resolves_its_instances_and_stops(engine: sa.Engine) -> None:
    rig = Rig(engine)
    rig.store.buckets = lambda w: [Bucket(("ns1",), 1)]
    rig.repo.put("a", spec())
    rig.scheduler.step()
    rig.repo.delete("a")
    rig.clock.advance(MINUTE)
    assert rig.scheduler.step() == 0
    with engine.connect() as conn:
        assert conn.scalar(sa.select(alert_instances.c.state)) == "resolved"
    assert rig.metric("policywatch_evaluator_alerts") == 0


def test_edited_alert_runs_promptly_with_the_new_spec(engine: sa.Engine) -> None:
    rig = Rig(engine)
    rig.repo.put("a", spec())
    rig.scheduler.step()
    rig.clock.advance(timedelta(seconds=20))
    rig.repo.put("a", spec(lookback=timedelta(minutes=7)), generation=2)
    assert rig.scheduler.step() == 1
    assert rig.store.windows[-1] == Window(rig.clock.now - timedelta(minutes=7), rig.clock.now)


def test_after_a_prompt_first_run_alerts_spread_over_the_period(engine: sa.Engine) -> None:
    rig = Rig(engine, spread=True)
    names = [f"alert-{i}" for i in range(20)]
    for name in names:
        rig.repo.put(name, spec())
    assert rig.scheduler.step() == 20  # all run at once, promptly
    slots = {name: rig.scheduler.next_slot(name, T0, MINUTE) for name in names}
    assert all(T0 < slot <= T0 + MINUTE for slot in slots.values())
    assert len({slot.second for slot in slots.values()}) > 10  # spread, not bunched
    first = min(slots.values())
    rig.clock.now = first
    assert rig.scheduler.step() == 1
    # From its slot on, an alert runs exactly every period.
    name = next(n for n, t in slots.items() if t == first)
    assert rig.scheduler.next_slot(name, first, MINUTE) == first + MINUTE


def test_bucket_cap_and_bad_query_are_error_conditions(engine: sa.Engine) -> None:
    rig = Rig(engine, bucket_cap=2)
    rig.store.buckets = lambda w: [Bucket((f"ns{i}",), 1) for i in range(5)]
    rig.repo.put("wide", spec())
    rig.repo.put("typo", spec(query="source_namespac = x"))
    assert rig.repo.status == {}
    rig.scheduler.sync()
    assert rig.repo.status["wide"].executionState == "pending"
    rig.scheduler.step()
    wide, typo = rig.repo.status["wide"], rig.repo.status["typo"]
    assert (wide.healthy, wide.errorConditions[0].type) == (False, "BucketCapReached")
    assert "more than 2 aggregation buckets" in wide.errorConditions[0].message
    assert (typo.healthy, typo.errorConditions[0].type) == (False, "QueryInvalid")
    assert "source_namespace" in typo.errorConditions[0].message  # the suggestion


def test_start_stop_start_again(engine: sa.Engine) -> None:
    """The app may be built twice over one engine (tests do): the scheduler restarts cleanly."""
    rig = Rig(engine, poll_interval=0.05)
    rig.repo.put("a", spec())

    async def cycle() -> None:
        await rig.scheduler.start()
        await asyncio.sleep(0.3)
        await rig.scheduler.stop()

    asyncio.run(cycle())
    rig.clock.advance(MINUTE)
    asyncio.run(cycle())
    assert rig.runs("a") == [T0, T0 + MINUTE]


class FlakyNotifier:
    def __init__(self) -> None:
        self.down = False
        self.sent: list[Notification] = []

    def send(self, notifications: Sequence[Notification]) -> None:
        if self.down:
            raise NotifyError("alertmanager unreachable (test)")
        self.sent.extend(notifications)


class FlakyEventSink:
    def __init__(self) -> None:
        self.down = False
        self.events: list[Event] = []

    def add(self, events: Sequence[Event]) -> int:
        if self.down:
            raise StoreError("event index unreachable (test)")
        self.events.extend(events)
        return len(events)

    def search(self, query: EventQuery) -> EventPage:
        raise NotImplementedError


def test_resolutions_and_event_copies_are_retried_after_a_failure(engine: sa.Engine) -> None:
    notifier, sink = FlakyNotifier(), FlakyEventSink()
    rig = Rig(engine, notifier=notifier, event_sink=sink)
    rig.store.buckets = lambda w: [Bucket(("ns1",), 1)] if w.end == T0 else []
    rig.repo.put("a", spec())
    notifier.down = sink.down = True
    rig.scheduler.step()  # fires: notification and event copy fail
    rig.clock.advance(MINUTE)
    rig.scheduler.step()  # resolves: the resolution fails too
    assert notifier.sent == [] and sink.events == []
    notifier.down = sink.down = False
    rig.clock.advance(MINUTE)
    rig.scheduler.step()  # nothing new happens, but what failed before goes now
    assert [(n.labels["source_namespace"], n.resolved, n.ends_at) for n in notifier.sent] == [
        ("ns1", True, T0 + MINUTE)
    ]
    assert [e.record for e in sink.events] == [{"source_namespace": "ns1", "count": 1.0}]
    assert rig.metric("policywatch_evaluator_notifications_total", outcome="error") == 2


def test_a_late_prompt_run_does_not_carry_its_lateness_into_the_next_round(engine: sa.Engine) -> None:
    rig = Rig(engine, spread=True)
    name = next(
        f"alert-{i}" for i in range(100) if rig.scheduler.next_slot(f"alert-{i}", T0, MINUTE) < T0 + 10 * SECOND
    )
    rig.repo.put(name, spec())
    rig.scheduler.sync()  # seen at T0: its prompt run is due at T0
    rig.clock.advance(30 * SECOND)  # but starts 30 s late (a burst of creations)
    assert rig.scheduler.step() == 1
    slot_after_start = rig.scheduler.next_slot(name, T0 + 30 * SECOND, MINUTE)
    assert slot_after_start > T0 + 30 * SECOND
    rig.clock.now = slot_after_start - SECOND
    assert rig.scheduler.step() == 0  # not due at once, as its first slot (T0 + <10 s) would have been
    rig.clock.now = slot_after_start
    assert rig.scheduler.step() == 1
    assert rig.runs(name) == [T0, slot_after_start]
