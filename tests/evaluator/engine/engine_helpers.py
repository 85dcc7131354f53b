"""Test helpers of the engine tests: an in-memory AlertRepository and a scripted log store.

The scripted store stands in where a test needs a store that fails on demand or answers per window; the
engine's SQL store itself is tested against real tables in test_sqlstore.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from evaluator.alerts import AlertStatus, GlobalAlertSpec
from evaluator.engine.model import Bucket, Hit, StoreError, Window
from evaluator.engine.tables import alert_instances, alert_runs, alert_schedule, alert_seen_hits, delivery_outbox
from evaluator.events import events_table
from evaluator.ports import StoredAlert

ENGINE_TABLES = [events_table, alert_instances, alert_seen_hits, alert_schedule, alert_runs, delivery_outbox]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def create_engine_tables(engine: sa.Engine) -> None:
    ENGINE_TABLES[0].metadata.create_all(engine, tables=ENGINE_TABLES)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class MemoryRepository:
    def __init__(self) -> None:
        self.alerts: dict[str, StoredAlert] = {}
        self.status: dict[str, AlertStatus] = {}
        self.lock = threading.Lock()

    def put(self, name: str, spec: GlobalAlertSpec, *, generation: int = 1) -> None:
        now = datetime.now(UTC)
        self.alerts[name] = StoredAlert(name, spec, f"uid-{name}", str(generation), generation, now, now)

    def delete(self, name: str) -> None:
        self.alerts.pop(name, None)

    def list_alerts(self) -> list[StoredAlert]:
        return [self.alerts[k] for k in sorted(self.alerts)]

    def get_alert(self, name: str) -> StoredAlert | None:
        return self.alerts.get(name)

    def get_status(self, name: str) -> AlertStatus | None:
        return self.status.get(name)

    def write_status(self, name: str, status: AlertStatus) -> None:
        with self.lock:
            if name in self.alerts:
                self.status[name] = status


@dataclass
class ScriptedStore:
    """Answers ``aggregate`` from ``buckets(window)``; raises StoreError while ``down``."""

    buckets: Callable[[Window], Sequence[Bucket]] = lambda w: ()
    down: bool = False
    windows: list[Window] = field(default_factory=list)

    def aggregate(self, *, window: Window, limit: int, **_: Any) -> Iterator[Bucket]:
        self.windows.append(window)
        if self.down:
            raise StoreError("connection refused by log store (test)")
        yield from list(self.buckets(window))[:limit]

    def hits(self, *, window: Window, limit: int, **_: Any) -> Iterator[Hit]:
        self.windows.append(window)
        if self.down:
            raise StoreError("connection refused by log store (test)")
        return iter(())


def spec(**overrides: Any) -> GlobalAlertSpec:
    values: dict[str, Any] = {
        "description": "count ${count} for ${source_namespace}",
        "severity": 40,
        "dataSet": "flows",
        "period": timedelta(minutes=1),
        "lookback": timedelta(minutes=2),
        "query": "",
        "aggregateBy": ("source_namespace",),
        "metric": "count",
        "condition": "gt",
        "threshold": 0.0,
    }
    values.update(overrides)
    return GlobalAlertSpec(**values)
