"""Three real ``policywatch-evaluator`` processes on one PostgreSQL run every alert-period exactly once,
and the others take over the alerts of one that is killed.

Alerts are written with a 1 s period straight into the store (the API refuses periods under 1m), so
that a few seconds hold many periods.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.db import migrate
from api.resources import GLOBAL_ALERT, ObjectIn
from api.store import ObjectStore
from devstack.services import free_port, http_get, wait_until
from evaluator.engine.tables import alert_runs
from evaluator.events import events_table, utc
from tests.evaluator.engine.engine_helpers import spec

pytestmark = pytest.mark.postgres
ALERTS = 40
PERIOD = timedelta(seconds=1)
EVALUATOR = Path(sys.executable).with_name("policywatch-evaluator")


def start(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "POLICYWATCH_SCHEDULER_LEASE_TTL": "3s",
        "POLICYWATCH_RETENTION_INTERVAL": "1h",
        "POLICYWATCH_SCHEDULER_WORKERS": "4",
    }
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(EVALUATOR), "--port", str(port), "--database-url", url, "--no-migrate", "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=30, what="evaluator up")
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def test_three_processes_each_alert_period_once_and_takeover(pg_database: str, tmp_path: Path) -> None:
    migrate(pg_database)
    engine = sa.create_engine(pg_database)
    store = ObjectStore(engine, GLOBAL_ALERT)
    for i in range(ALERTS):
        alert_spec = spec(
            description="flows: ${count}",
            period=PERIOD,
            lookback=timedelta(seconds=5),
            aggregateBy=(),
            metric="count",
            condition="gte",
            threshold=0.0,
        )
        store.create(obj=ObjectIn(f"alert-{i:03d}", None, {}, {}, alert_spec, ()))
    procs = [start(pg_database, tmp_path / f"evaluator-{n}.log") for n in range(3)]
    try:
        time.sleep(6)
        killed_at = datetime.now(UTC)
        stop(procs[0], signal.SIGKILL)  # no clean-up: its leases must expire
        time.sleep(8)
    finally:
        for proc in procs:
            stop(proc)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alert_runs.c.alert, alert_runs.c.scheduled_for, alert_runs.c.owner)).all()
        event_counts = dict(
            conn.execute(sa.select(events_table.c.alert, sa.func.count()).group_by(events_table.c.alert)).all()
        )
    engine.dispose()
    by_alert: dict[str, list[datetime]] = defaultdict(list)
    owners_before: set[str] = set()
    owners_after: set[str] = set()
    for alert, scheduled, owner in rows:
        by_alert[alert].append(utc(scheduled))
        (owners_before if utc(scheduled) < killed_at else owners_after).add(owner)
    assert len(by_alert) == ALERTS
    for alert, times in by_alert.items():
        times.sort()
        # The first run is prompt, then the alert keeps its own slot: every later step is one period.
        steps = {b - a for a, b in zip(times[1:], times[2:], strict=False)}
        assert steps == {PERIOD}, f"{alert}: periods not run exactly once each: {times}"
        assert times[-1] - times[0] >= timedelta(seconds=11), f"{alert} stopped running: {times}"
    assert len(owners_before) == 3, "all three processes took part"
    assert len(owners_after) == 2, "after the kill the other two carry on"
    # The instance fired at the first run and kept firing: one event per alert, whoever ran it.
    assert event_counts == {f"alert-{i:03d}": 1 for i in range(ALERTS)}
    logs = "".join((tmp_path / f"evaluator-{n}.log").read_text(errors="replace") for n in range(3))
    assert "already committed" not in logs
    assert "Traceback" not in logs
