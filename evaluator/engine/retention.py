"""Retention: embedded log records, events, resolved instances and run bookkeeping past their age are
deleted, periodically."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from evaluator.engine.sqlstore import SqlLogStore
from evaluator.engine.state import RESOLVED
from evaluator.engine.tables import alert_instances, alert_runs
from evaluator.events import SqlEventStore, utc
from evaluator.query import DATASETS

log = logging.getLogger(__name__)


class Retention:
    def __init__(
        self,
        *,
        engine: sa.Engine,
        log_store: SqlLogStore | None,
        events: SqlEventStore,
        keep_logs: timedelta,
        keep_events: timedelta,
        interval: timedelta,
        keep_runs: timedelta = timedelta(hours=24),
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._log_store = log_store
        self._events = events
        self._keep_logs = keep_logs
        self._keep_events = keep_events
        self._keep_runs = keep_runs
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, int]:
        """Delete what is past retention; returns how many rows went, by kind."""
        now = utc(self._clock())
        removed: dict[str, int] = {}
        if self._log_store is not None:
            for dataset in DATASETS:
                removed[dataset] = self._log_store.delete_before(dataset, now - self._keep_logs)
        removed["events"] = self._events.delete_before(now - self._keep_events)
        with self._engine.begin() as conn:
            # A committed run is never redone (the next run time only moves forward), so its row is
            # bookkeeping for operators and tests: kept a day, not with the events.
            removed["runs"] = conn.execute(
                alert_runs.delete().where(alert_runs.c.finished_at < now - self._keep_runs)
            ).rowcount
            removed["instances"] = conn.execute(
                alert_instances.delete().where(
                    alert_instances.c.state == RESOLVED, alert_instances.c.resolved_at < now - self._keep_events
                )
            ).rowcount
        return removed

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                removed = self.run_once()
                if any(removed.values()):
                    log.info("retention removed %s", removed)
            except Exception:  # retried next interval
                log.exception("retention failed; retrying in %s", self._interval)
            self._stop.wait(self._interval.total_seconds())

    async def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._thread = None
