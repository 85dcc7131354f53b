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
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.dialects import postgresql, sqlite

from evaluator.alerts import AlertStatus, ErrorCondition
from evaluator.engine import state
from evaluator.engine.execute import DEFAULT_BUCKET_CAP, run
from evaluator.engine.instances import track
from evaluator.engine.logstore import LogStore
from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.model import BucketCapReached, StoreError, Window
from evaluator.engine.notify import Notification, Notifier, NotifyError, notifications_for, resolved_notifications
from evaluator.engine.tables import alert_runs, alert_schedule
from evaluator.events import Event, EventStore, insert_events, utc
from evaluator.ports import AlertRepository, StoredAlert

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RETRY_BACKLOG = 10_000
PENDING = "pending"
EXECUTED = "executed"
CATCHING_UP = "catching_up"
FAILED = "failed"


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


@dataclass(frozen=True)
class Claim:
    alert: str
    next_run: datetime
    failures: int


class _LostLease(Exception):
    pass


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
    ) -> None:
        self._engine = engine
        self._repository = repository
        self._log_store = log_store
        self._notifier = notifier
        self._event_sink = event_sink  # a copy of the events elsewhere (OpenSearch), written after commit
        self.config = config or SchedulerConfig()
        self._clock = clock
        self._metrics = metrics or EngineMetrics(CollectorRegistry())  # unexposed unless one is passed
        self.owner = owner or default_owner()
        self._alerts: dict[str, StoredAlert] = {}
        self._last_sync = float("-inf")
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Deliveries that failed and are not repeated by later runs by themselves (resolved notifications,
        # event copies): retried with the next delivery, oldest dropped beyond RETRY_BACKLOG.
        self._retry_lock = threading.Lock()
        self._unsent_resolved: list[Notification] = []
        self._uncopied_events: list[Event] = []

    # -- the alert list ---------------------------------------------------------------------------------------
    def sync(self) -> None:
        """Add schedule rows for new alerts, reschedule edited ones promptly, retire deleted ones."""
        now = utc(self._clock())
        with self._engine.connect() as conn:
            known = {
                r.alert: r.generation
                for r in conn.execute(sa.select(alert_schedule.c.alert, alert_schedule.c.generation))
            }
        alerts = {a.name: a for a in self._repository.list_alerts()}
        self._alerts = alerts
        self._metrics.gauges.set_alerts(alerts)
        fresh = [a for name, a in alerts.items() if name not in known]
        if fresh:
            with self._engine.begin() as conn:
                inserted = list(
                    conn.scalars(
                        _insert_ignore(conn, alert_schedule).returning(alert_schedule.c.alert),
                        [{"alert": a.name, "generation": a.generation, "next_run": now, "failures": 0} for a in fresh],
                    )
                )
            for name in inserted:  # only rows this process added: another may have run the alert already
                self._repository.write_status(
                    name, AlertStatus(lastUpdate=now, active=True, healthy=True, executionState=PENDING)
                )
        for name, alert in alerts.items():
            if name in known and known[name] != alert.generation:
                with self._engine.begin() as conn:
                    conn.execute(
                        alert_schedule.update()
                        .where(alert_schedule.c.alert == name, alert_schedule.c.generation != alert.generation)
                        .values(
                            generation=alert.generation,
                            next_run=sa.func.least(alert_schedule.c.next_run, now)
                            if conn.dialect.name == "postgresql"
                            else sa.func.min(alert_schedule.c.next_run, now),
                            retry_at=None,
                            failures=0,
                        )
                    )
        for name in set(known) - set(alerts):
            if self._repository.get_alert(name) is None:
                self._retire(name, now)

    def _retire(self, name: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            deleted = conn.execute(alert_schedule.delete().where(alert_schedule.c.alert == name)).rowcount
            resolved = state.resolve_all(conn, name, now) if deleted else []
        self._notify(resolved_notifications(alert=name, instances=resolved, at=now))
        self._metrics.gauges.set_firing(name, 0)
        self._write_status(name, active=False, healthy=True, state=EXECUTED, errors=())

    # -- claiming ---------------------------------------------------------------------------------------------
    def claim(self, limit: int) -> list[Claim]:
        now = utc(self._clock())
        due = sa.and_(
            alert_schedule.c.next_run <= now,
            sa.or_(alert_schedule.c.retry_at.is_(None), alert_schedule.c.retry_at <= now),
            sa.or_(alert_schedule.c.lease_expires.is_(None), alert_schedule.c.lease_expires < now),
        )
        with self._engine.begin() as conn:
            candidates = (
                sa.select(alert_schedule.c.alert)
                .where(due)
                .order_by(alert_schedule.c.next_run)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = conn.execute(
                alert_schedule.update()
                .where(alert_schedule.c.alert.in_(candidates), due)
                .values(lease_owner=self.owner, lease_expires=now + self.config.lease_ttl)
                .returning(alert_schedule.c.alert, alert_schedule.c.next_run, alert_schedule.c.failures)
            ).all()
        return sorted((Claim(r.alert, utc(r.next_run), r.failures) for r in rows), key=lambda c: c.next_run)

    # -- one run ------------------------------------------------------------------------------------------------
    def run_claim(self, claim: Claim) -> None:
        started = utc(self._clock())
        stored = self._alerts.get(claim.alert) or self._repository.get_alert(claim.alert)
        if stored is None:
            self._release(claim)
            return
        spec = stored.spec
        scheduled, skipped = self._catch_up_limit(claim.next_run, spec.period, started)
        self._metrics.lateness.observe(max(0.0, (started - scheduled).total_seconds()))
        t0 = time.perf_counter()
        try:
            result = run(
                spec, Window.ending_at(scheduled, spec.lookback), self._log_store, bucket_cap=self.config.bucket_cap
            )
        except Exception as exc:  # noqa: BLE001 - any failure of a run is the alert's error, never the process's
            self._metrics.run_duration.labels(claim.alert).observe(time.perf_counter() - t0)
            self._fail(claim, stored, exc)
            return
        try:
            with self._engine.begin() as conn:
                updated = conn.execute(
                    alert_schedule.update()
                    .where(
                        alert_schedule.c.alert == claim.alert,
                        alert_schedule.c.lease_owner == self.owner,
                        alert_schedule.c.next_run == claim.next_run,
                    )
                    .values(
                        next_run=self._after(claim.alert, scheduled, started, spec.period),
                        failures=0,
                        retry_at=None,
                        last_error=None,
                        lease_owner=None,
                        lease_expires=None,
                    )
                ).rowcount
                if updated != 1:
                    raise _LostLease
                firing = state.load_firing(conn, claim.alert)
                seen = state.load_seen(conn, claim.alert, [f.key for f in result.findings]) if result.per_hit else set()
                transitions = track(
                    alert=claim.alert,
                    severity=spec.severity,
                    at=scheduled,
                    result=result,
                    firing=firing,
                    seen_hits=seen,
                )
                written = insert_events(conn, transitions.events)
                state.apply(conn, claim.alert, transitions, lookback=spec.lookback)
                conn.execute(
                    alert_runs.insert().values(
                        alert=claim.alert,
                        scheduled_for=scheduled,
                        owner=self.owner,
                        started_at=started,
                        finished_at=utc(self._clock()),
                        events=written,
                        findings=len(result.findings),
                    )
                )
        except _LostLease:
            log.info("alert %s period %s: lease lost to another process; its run counts", claim.alert, scheduled)
            return
        except sa.exc.IntegrityError:
            log.warning("alert %s period %s was already committed; skipped", claim.alert, scheduled)
            return
        finally:
            self._metrics.run_duration.labels(claim.alert).observe(time.perf_counter() - t0)
        self._metrics.runs.labels(claim.alert, "ok").inc()
        self._copy_events(transitions.events)
        if written:
            self._metrics.events.labels(claim.alert, str(spec.severity)).inc(written)
        firing_now = len(firing) - len(transitions.resolved) + len(transitions.started)
        self._metrics.gauges.set_firing(claim.alert, firing_now)
        self._metrics.gauges.set_healthy(claim.alert, True)
        self._notify(
            notifications_for(
                alert=claim.alert,
                severity=spec.severity,
                aggregate_by=spec.aggregateBy,
                period=spec.period,
                transitions=transitions,
                firing_before=firing,
            )
        )
        errors: tuple[ErrorCondition, ...] = ()
        previous = self._repository.get_status(claim.alert)
        if previous is not None and previous.executionState == CATCHING_UP:
            # A skip is reported until the catch-up it happened in is over, then cleared by the next run.
            errors = tuple(c for c in previous.errorConditions if c.type == "CatchUpLimit")
        if skipped:
            errors += (
                ErrorCondition(
                    "CatchUpLimit",
                    f"skipped {skipped} missed period(s) before {scheduled.isoformat()}: at most "
                    f"{self.config.max_catchup} are caught up after downtime",
                ),
            )
        behind = started - scheduled >= spec.period  # a later period was already due when this one started
        self._write_status(
            claim.alert,
            active=True,
            healthy=True,
            state=CATCHING_UP if behind else EXECUTED,
            errors=errors,
            event_at=scheduled if written else None,
            previous=previous,
        )

    def next_slot(self, alert: str, scheduled: datetime, period: timedelta) -> datetime:
        """The run after ``scheduled``: ``+ period``, or with ``spread`` the alert's next slot after it,
        which is at most a period later, so consecutive windows never leave a gap."""
        if not self.config.spread:
            return scheduled + period
        period_us = max(1, round(period / timedelta(microseconds=1)))
        offset_us = int.from_bytes(hashlib.sha256(alert.encode()).digest()[:8], "big") % period_us
        since_epoch_us = round((scheduled - _EPOCH) / timedelta(microseconds=1))
        slot = (since_epoch_us - offset_us) // period_us + 1
        return _EPOCH + timedelta(microseconds=slot * period_us + offset_us)

    def _after(self, alert: str, scheduled: datetime, started: datetime, period: timedelta) -> datetime:
        """The next run: the next slot after ``scheduled``. A prompt run (first, or after an edit) is off the
        alert's slots; when it started late (many alerts created at once), the slot after its start is taken,
        so the lateness of a burst is not carried into the next round. Windows still overlap while lookback
        exceeds period plus that lateness."""
        if not self.config.spread or self.next_slot(alert, scheduled - period, period) == scheduled:
            return self.next_slot(alert, scheduled, period)
        return self.next_slot(alert, max(scheduled, started), period)

    def earliest_due(self) -> datetime | None:
        """When the next alert-period falls due (to sleep until then)."""
        with self._engine.connect() as conn:
            value = conn.scalar(
                sa.select(
                    sa.func.min(
                        sa.case(
                            (alert_schedule.c.retry_at > alert_schedule.c.next_run, alert_schedule.c.retry_at),
                            else_=alert_schedule.c.next_run,
                        )
                    )
                )
            )
        return None if value is None else utc(value)

    def _catch_up_limit(self, next_run: datetime, period: timedelta, now: datetime) -> tuple[datetime, int]:
        missed = int((now - next_run) / period)  # whole periods after next_run that are due too
        excess = missed - (self.config.max_catchup - 1)
        if excess <= 0:
            return next_run, 0
        return next_run + excess * period, excess

    def _fail(self, claim: Claim, stored: StoredAlert, exc: Exception) -> None:
        now = utc(self._clock())
        message = _error_message(exc)
        delay = min(self.config.backoff_max, self.config.backoff_initial * (2 ** min(claim.failures, 20)))
        with self._engine.begin() as conn:
            conn.execute(
                alert_schedule.update()
                .where(alert_schedule.c.alert == claim.alert, alert_schedule.c.lease_owner == self.owner)
                .values(
                    failures=alert_schedule.c.failures + 1,
                    retry_at=now + delay,
                    last_error=message,
                    lease_owner=None,
                    lease_expires=None,
                )
            )
        log.warning("alert %s failed (retry in %s): %s", claim.alert, delay, message)
        self._metrics.runs.labels(claim.alert, "error").inc()
        self._metrics.gauges.set_healthy(claim.alert, False)
        self._write_status(
            claim.alert,
            active=True,
            healthy=False,
            state=FAILED,
            errors=(ErrorCondition(_error_type(exc), message),),
        )

    def _release(self, claim: Claim) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                alert_schedule.update()
                .where(alert_schedule.c.alert == claim.alert, alert_schedule.c.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires=None)
            )

    def _copy_events(self, events: Sequence[Event]) -> None:
        if self._event_sink is None:
            return
        with self._retry_lock:
            batch = [*self._uncopied_events, *events]
            self._uncopied_events = []
        if not batch:
            return
        try:
            self._event_sink.add(batch)
        except StoreError as exc:
            with self._retry_lock:
                self._uncopied_events = [*batch, *self._uncopied_events][-RETRY_BACKLOG:]
            log.warning("%d events kept in SQL, not yet copied to the event index (retried): %s", len(batch), exc)

    def _notify(self, notifications: Sequence[Notification]) -> None:
        if self._notifier is None:
            return
        with self._retry_lock:
            batch = [*self._unsent_resolved, *notifications]
            self._unsent_resolved = []
        if not batch:
            return
        try:
            self._notifier.send(batch)
        except NotifyError as exc:
            self._metrics.notifications.labels("error").inc(len(batch))
            # Firing instances are re-sent by every run anyway; resolutions are kept for the next try.
            resolved = [n for n in batch if n.resolved]
            with self._retry_lock:
                self._unsent_resolved = [*resolved, *self._unsent_resolved][-RETRY_BACKLOG:]
            log.warning("notification failed (%d resolutions kept for retry): %s", len(resolved), exc)
            return
        self._metrics.notifications.labels("ok").inc(len(batch))

    def _write_status(
        self,
        name: str,
        *,
        active: bool,
        healthy: bool,
        state: str,
        errors: tuple[ErrorCondition, ...],
        event_at: datetime | None = None,
        previous: AlertStatus | None = None,
    ) -> None:
        now = utc(self._clock())
        if previous is None:
            previous = self._repository.get_status(name)
        last_event = event_at or (previous.lastEvent if previous else None)
        ran = state not in (PENDING,)
        self._repository.write_status(
            name,
            AlertStatus(
                lastUpdate=now,
                active=active,
                healthy=healthy,
                executionState=state,
                lastExecuted=now if ran else (previous.lastExecuted if previous else None),
                lastEvent=last_event,
                errorConditions=errors,
            ),
        )

    # -- the loop -----------------------------------------------------------------------------------------------
    def step(self) -> int:
        """Sync the alert list if due, then claim and run due alert-periods until none is due; returns runs."""
        if time.monotonic() - self._last_sync >= self.config.sync_interval:
            self.sync()
            self._last_sync = time.monotonic()
        done = 0
        while not self._stop.is_set():
            claims = self.claim(max(self.config.claim_batch, self.config.workers))
            if not claims:
                break
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="alert-run")
            list(self._pool.map(self.run_claim, claims))
            done += len(claims)
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
            except Exception:  # noqa: BLE001 - the database may be away; keep trying with back-off
                failures += 1
                wait = min(60.0, self.config.poll_interval * 2**failures)
                log.exception("scheduler step failed (retrying in %.1fs)", wait)
            self._stop.wait(wait)

    async def start(self) -> None:
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


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> sa.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return table.insert()


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
