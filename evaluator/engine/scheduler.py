"""The scheduler: every GlobalAlert every period, exactly once across evaluator processes.

Each alert has a row in ``alert_schedule`` with the next scheduled time ``T`` (first ``T`` = when the
scheduler first sees the alert, so the first run is prompt; then ``T + period``). A process claims due rows
by taking a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), runs the alert over ``(T - lookback, T]``,
and commits events, instance state, an ``alert_runs`` row and ``next_run = T + period`` in one transaction
that first checks it still holds the lease. A process that dies leaves a lease that expires
(``lease_ttl``); another process then runs that period. After downtime the missed periods run one after
the other, at most ``max_catchup`` of them (older ones are skipped and reported). A failed run keeps ``T``
and is retried with exponential back-off, so no period is lost to an outage shorter than the catch-up.

``executionState`` values: ``pending`` (not run yet), ``executed`` (last run succeeded and is up to date),
``catching_up`` (last run succeeded but started a period or more late: missed periods are being run),
``failed`` (last run failed; retried with back-off; the message is in errorConditions).

The parts: ``schedule.py`` (the table: claim, advance, fail, release), ``commit.py`` (one transaction per
run), ``outbox.py`` (deliveries kept in a table until sent), and here the loop that ties them together.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from evaluator.engine.commit import Committed, commit_run, retire
from evaluator.engine.execute import DEFAULT_BUCKET_CAP, run
from evaluator.engine.logstore import LogStore
from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.model import BucketCapReached, StoreError, Window
from evaluator.engine.notify import Notifier
from evaluator.engine.outbox import Deliveries, Outbox, OutboxConfig
from evaluator.engine.schedule import Claim, ScheduleTable, next_slot, run_after
from evaluator.engine.status import StatusWriter
from evaluator.events import EventStore, utc
from evaluator.ports import AlertRepository, StatusInTransaction, StoredAlert

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
# Reading (and validating) the alert list costs ~0.1 ms per alert: it is read again after at least this
# many times its cost, so with thousands of alerts the loop spends at most ~5% of its time on it.
SYNC_COST_FACTOR = 20
__all__ = ["Claim", "Scheduler", "SchedulerConfig", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class SchedulerConfig:
    poll_interval: float = 1.0  # longest sleep between looks for due alerts when idle
    # After its prompt first run an alert moves to a slot of its own within the period (a hash of its
    # name, as Prometheus spreads rule groups), so alerts created together do not all run at once.
    spread: bool = True
    sync_interval: float = 1.0  # seconds between reads of the alert list (new, changed, deleted alerts)
    lease_ttl: timedelta = timedelta(seconds=60)
    max_catchup: int = 24  # missed periods run after downtime; older ones are skipped
    backoff_initial: timedelta = timedelta(seconds=5)
    backoff_max: timedelta = timedelta(minutes=5)
    bucket_cap: int = DEFAULT_BUCKET_CAP
    workers: int = 4
    claim_batch: int = 16


class Scheduler:
    def __init__(
        self,
        *,
        engine: sa.Engine,
        repository: AlertRepository,
        log_store: LogStore,
        notifier: Notifier | None = None,
        event_sink: EventStore | None = None,
        config: SchedulerConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: EngineMetrics | None = None,
        owner: str | None = None,
        status_in_run: StatusInTransaction | None = None,
    ) -> None:
        """``status_in_run``: status storage over ``engine``'s database that joins the run's transaction
        (the SQL repository); without it status is written after the commit (GlobalAlerts in Kubernetes)."""
        self._engine = engine
        self._repository = repository
        self._log_store = log_store
        self.config = config = config or SchedulerConfig()
        self._clock = clock
        self._metrics = metrics or EngineMetrics(CollectorRegistry())  # unexposed unless one is passed
        self.owner = owner or default_owner()
        self.schedule = ScheduleTable(engine, owner=self.owner, clock=clock, lease_ttl=config.lease_ttl)
        outbox_config = OutboxConfig(config.lease_ttl, config.backoff_initial, config.backoff_max)
        self.deliveries = Deliveries(
            Outbox(engine, owner=self.owner, clock=clock, config=outbox_config),
            notifier=notifier,
            event_sink=event_sink,  # a copy of the events elsewhere (OpenSearch)
            on_notified=lambda outcome, count: self._metrics.notifications.labels(outcome).inc(count),
        )
        self.status = StatusWriter(
            repository, clock=clock, max_catchup=config.max_catchup, in_transaction=status_in_run
        )
        self._alerts: dict[str, StoredAlert] = {}
        self._last_sync = float("-inf")
        self._sync_cost = 0.0  # seconds the last read of the alert list took
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the alert list ---------------------------------------------------------------------------------------
    def sync(self) -> None:
        """Add schedule rows for new alerts, reschedule edited ones promptly, retire deleted ones."""
        now = utc(self._clock())
        known = self.schedule.generations()
        alerts = {a.name: a for a in self._repository.list_alerts()}
        self._alerts = alerts
        self._metrics.gauges.set_alerts(alerts)
        for name in self.schedule.add([a for n, a in alerts.items() if n not in known], now):
            # Only rows this process added: another may have run the alert already.
            self.status.pending(name, now)
        for name, alert in alerts.items():
            if name in known and known[name] != alert.generation:
                self.schedule.reschedule(name, alert.generation, now)
        for name in set(known) - set(alerts):
            if self._repository.get_alert(name) is None:
                retire(self._engine, deliveries=self.deliveries, name=name, now=now)
                self._metrics.gauges.set_firing(name, 0)
                self.status.retired(name)

    def claim(self, limit: int) -> list[Claim]:
        return self.schedule.claim(limit)

    def next_slot(self, alert: str, scheduled: datetime, period: timedelta) -> datetime:
        return next_slot(alert, scheduled, period, spread=self.config.spread)

    def earliest_due(self) -> datetime | None:
        return self.schedule.earliest_due()

    # -- one run ------------------------------------------------------------------------------------------------
    def run_claim(self, claim: Claim) -> None:
        """Run ``claim``'s period over the logs and commit it with its status, then notify and count."""
        started = utc(self._clock())
        stored = self._alerts.get(claim.alert) or self._repository.get_alert(claim.alert)
        if stored is None:
            self.schedule.release(claim)
            return
        spec = stored.spec
        scheduled, skipped = catch_up_limit(claim.next_run, spec.period, started, self.config.max_catchup)
        self._metrics.lateness.observe(max(0.0, (started - scheduled).total_seconds()))
        t0 = time.perf_counter()
        try:
            window = Window.ending_at(scheduled, spec.lookback)
            result = run(spec, window, self._log_store, bucket_cap=self.config.bucket_cap)
        except Exception as exc:  # any failure of a run is the alert's error, never the process's
            self._metrics.run_duration.labels(claim.alert).observe(time.perf_counter() - t0)
            self._fail(claim, exc)
            return
        next_run = run_after(claim.alert, scheduled, started, spec.period, spread=self.config.spread)

        write_status = functools.partial(
            self.status.ran, claim.alert, scheduled=scheduled, started=started, period=spec.period, skipped=skipped
        )
        try:
            committed = commit_run(
                self._engine,
                schedule=self.schedule,
                deliveries=self.deliveries,
                claim=claim,
                spec=spec,
                result=result,
                scheduled=scheduled,
                started=started,
                next_run=next_run,
                owner=self.owner,
                finished=utc(self._clock()),
                status=write_status if self.status.joins_transactions else None,
            )
        except Exception as exc:  # the commit failed (database away, status not writable): nothing was stored
            self._fail(claim, exc)
            return
        finally:
            self._metrics.run_duration.labels(claim.alert).observe(time.perf_counter() - t0)
        if committed is None:
            return
        record_commit(self._metrics, claim.alert, str(spec.severity), committed)
        self.deliveries.send_firing(committed.firing)
        if not self.status.joins_transactions:
            write_status(None, committed.written)

    def _fail(self, claim: Claim, exc: Exception) -> None:
        message = _error_message(exc)
        delay = min(self.config.backoff_max, self.config.backoff_initial * (2 ** min(claim.failures, 20)))
        error_type = _error_type(exc)

        def write_status(conn: sa.Connection | None) -> None:
            self.status.failed(claim.alert, error_type, message, conn=conn)

        joined = self.status.joins_transactions
        self.schedule.fail(
            claim, retry_at=utc(self._clock()) + delay, message=message, also=write_status if joined else None
        )
        log.warning("alert %s failed (retry in %s): %s", claim.alert, delay, message)
        self._metrics.runs.labels(claim.alert, "error").inc()
        self._metrics.gauges.set_healthy(claim.alert, False)
        if not joined:
            write_status(None)

    # -- the loop -----------------------------------------------------------------------------------------------
    def step(self) -> int:
        """Sync the alert list if due, claim and run due alert-periods until none is due, then send what
        the outbox holds; returns runs."""
        interval = self.config.sync_interval  # 0: every step
        if interval > 0:
            interval = max(interval, self._sync_cost * SYNC_COST_FACTOR)
        if time.monotonic() - self._last_sync >= interval:
            began = time.monotonic()
            self.sync()
            self._last_sync = time.monotonic()
            self._sync_cost = self._last_sync - began
        done = 0
        while not self._stop.is_set():
            claims = self.claim(max(self.config.claim_batch, self.config.workers))
            if not claims:
                break
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="alert-run")
            list(self._pool.map(self.run_claim, claims))
            done += len(claims)
        self.deliveries.flush()
        return done

    def run_forever(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.step()
                failures = 0
                wait = self.config.poll_interval
                due = self.earliest_due()
                if due is not None:
                    wait = min(wait, max(0.01, (due - utc(self._clock())).total_seconds()))
            except Exception:  # the database may be away; keep trying with back-off
                failures += 1
                wait = min(60.0, self.config.poll_interval * 2**failures)
                log.exception("scheduler step failed (retrying in %.1fs)", wait)
            self._stop.wait(wait)

    async def start(self) -> None:
        # The runs share the GIL with the API's threads: a thread that waits on I/O (every SQLite call) gets
        # the GIL back only after the switch interval, 5 ms by default, and a request makes dozens of such
        # calls; a shorter interval keeps requests from queueing behind the runs (a convoy).
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="alert-scheduler", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join)
        self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None  # a later start() makes a new one


def catch_up_limit(next_run: datetime, period: timedelta, now: datetime, max_catchup: int) -> tuple[datetime, int]:
    """The period to run after downtime and how many older ones are skipped (at most ``max_catchup`` run)."""
    missed = int((now - next_run) / period)  # whole periods after next_run that are due too
    excess = missed - (max_catchup - 1)
    if excess <= 0:
        return next_run, 0
    return next_run + excess * period, excess


def record_commit(metrics: EngineMetrics, name: str, severity: str, committed: Committed) -> None:
    metrics.runs.labels(name, "ok").inc()
    if committed.written:
        metrics.events.labels(name, severity).inc(committed.written)
    metrics.gauges.set_firing(name, committed.firing_now)
    metrics.gauges.set_healthy(name, True)


def _error_type(exc: Exception) -> str:
    if isinstance(exc, BucketCapReached):
        return "BucketCapReached"
    if isinstance(exc, StoreError):
        return "StoreUnavailable"
    if isinstance(exc, ValueError):
        return "QueryInvalid"
    return "RunFailed"


def _error_message(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 1000 else text[:997] + "..."
