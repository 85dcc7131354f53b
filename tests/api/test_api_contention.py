"""Database contention (issue 17.1), with a real lock held by the test on a real evaluator process:
requests that cannot get the lock or a connection are 503 with Retry-After within the configured
timeouts, nothing is 500, and ``/healthz`` answers at once however many threads are waiting."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import sqlalchemy as sa

from tests.api.support import EvaluatorProcess

WAITERS = 45  # more than the pool (5 + 10 overflow) and the thread pool (40) hold
TIMEOUT_S = 3  # lock and pool timeouts of the server: how long a request may wait for the database


def alert(name: str) -> dict[str, object]:
    spec = {
        "severity": 50,
        "dataSet": "flows",
        "period": "5m",
        "lookback": "15m",
        "description": "denied",
        "query": "action=deny",
    }
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalAlert", "metadata": {"name": name}, "spec": spec}


@contextmanager
def table_locked(url: str) -> Iterator[None]:
    """``global_alerts`` locked by another connection: PostgreSQL ``LOCK TABLE``, SQLite ``BEGIN IMMEDIATE``."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("LOCK TABLE global_alerts IN ACCESS EXCLUSIVE MODE"))
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def test_a_held_lock_gives_503_with_retry_after_and_health_never_waits(
    evaluator: EvaluatorProcess, db_url: str
) -> None:
    env = {"POLICYWATCH_DATABASE_LOCK_TIMEOUT": str(TIMEOUT_S), "POLICYWATCH_DATABASE_POOL_TIMEOUT": str(TIMEOUT_S)}
    base = evaluator.start("--database-url", db_url, "--no-scheduler", "--no-migrate", env=env)
    codes: Counter[int] = Counter()
    retry_after: set[str | None] = set()
    health: list[float] = []
    done = threading.Event()

    def post(index: int) -> None:
        response = httpx.post(f"{base}/globalalerts", json=alert(f"locked-{index}"), timeout=30)
        codes[response.status_code] += 1
        if response.status_code == 503:
            retry_after.add(response.headers.get("retry-after"))
            assert "database" in response.json()["message"]

    def probe_health() -> None:
        with httpx.Client(base_url=base, timeout=30) as probe:
            while not done.is_set():
                started = time.monotonic()
                assert probe.get("/healthz").status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.05)

    with table_locked(db_url):
        prober = threading.Thread(target=probe_health)
        prober.start()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(WAITERS) as pool:
                list(pool.map(post, range(WAITERS)))
                events = httpx.get(f"{base}/events", timeout=30)
        finally:
            done.set()
            prober.join()
        elapsed = time.monotonic() - started
    assert codes == {503: WAITERS}, codes
    assert retry_after == {"5"}
    assert events.status_code in (200, 503), events.text
    # Health never waits for the database: a sync route would have queued behind threads each blocked for a
    # whole lock timeout. The bounds are loose because CPU is shared with the requests arriving at once.
    assert max(health) < TIMEOUT_S * 2 / 3, f"/healthz took {max(health):.2f}s while {WAITERS} requests waited"
    assert sorted(health)[len(health) // 2] < 0.5, health
    assert elapsed < 8 * TIMEOUT_S, f"{WAITERS} requests took {elapsed:.1f}s with lock/pool timeouts of {TIMEOUT_S}s"
    # The lock gone, the same requests succeed: nothing was left half done.
    assert httpx.post(f"{base}/globalalerts", json=alert("after"), timeout=10).status_code == 201
