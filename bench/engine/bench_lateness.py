"""Benchmark: start lateness of 1,000 alerts at period 1m (target p99 <= 2 s on 2 cores).

The real scheduler with the real repository (``api.store``) runs in this process over a migrated
database holding ``--rows`` flow rows (default 2,000) in every window; every alert is a real aggregation.
Lateness = when a run started minus its scheduled time, read back from ``alert_runs``. Shown apart: the
first runs (all 1,000 alerts created at once, all due at once), the second runs (each alert's first slot
of its own; slots that fell inside the first burst start late) and the later runs (steady state).
Baseline in the same run: the mean time of one alert run, from the scheduler's own histogram.

    .venv/bin/python bench/engine/bench_lateness.py [--alerts 1000] [--minutes 3] [--workers 4] [--rows 2000]
        [--database-url URL | --postgres]   (--postgres: a throwaway PostgreSQL from Debian's packages)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_bench_data import bench_database, load_flows

from api.db import make_engine, migrate
from api.resources import GLOBAL_ALERT, ObjectIn
from api.store import ObjectStore, SqlAlertRepository
from evaluator.alerts import GlobalAlertSpec
from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.scheduler import Scheduler, SchedulerConfig
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.engine.tables import alert_runs


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL for the run")
    args = parser.parse_args()
    with bench_database(database_url=args.database_url, postgres=args.postgres) as url:
        measure(args, url)


def measure(args: argparse.Namespace, url: str) -> None:
    migrate(url)
    engine = make_engine(url)
    load_flows(engine, rows=args.rows, window=timedelta(minutes=10))
    # The generated flows end at a fixed past time; shift them to "now" so windows see them.
    shift = datetime.now(UTC).timestamp() - datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE logstore_flows SET end_time = end_time + :s"), {"s": shift})
    store = ObjectStore(engine, GLOBAL_ALERT)
    for i in range(args.alerts):
        spec = GlobalAlertSpec(
            description="${source_namespace}: ${count}",
            severity=1 + i % 100,
            dataSet="flows",
            period=timedelta(minutes=1),
            lookback=timedelta(minutes=10),
            query=f"dest_port = {[80, 443, 5432, 53][i % 4]}",
            aggregateBy=("source_namespace",),
            metric="count",
            condition="gt",
            threshold=float(i % 50),
        )
        store.create(obj=ObjectIn(f"alert-{i:04d}", None, {}, {}, spec, ()))
    registry = CollectorRegistry()
    scheduler = Scheduler(
        engine=engine,
        repository=SqlAlertRepository(engine),
        log_store=SqlLogStore(engine),
        config=SchedulerConfig(workers=args.workers),
        metrics=EngineMetrics(registry),
    )
    print(
        f"{args.alerts} alerts at period 1m on {engine.dialect.name}, {args.workers} workers, "
        f"{args.rows:,} flow rows, {args.minutes} min"
    )

    async def drive() -> None:
        await scheduler.start()
        await asyncio.sleep(args.minutes * 60)
        await scheduler.stop()

    asyncio.run(drive())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alert_runs.c.alert, alert_runs.c.scheduled_for, alert_runs.c.started_at)).all()
    seen: dict[str, int] = {}
    groups: dict[str, list[float]] = {"first runs (burst)": [], "second runs": [], "later runs (steady)": []}
    names = list(groups)
    for alert, scheduled, started in sorted(rows, key=lambda r: r[1]):
        late = (started - scheduled).total_seconds()
        nth = seen.get(alert, 0)
        seen[alert] = nth + 1
        groups[names[min(nth, 2)]].append(late)
    histogram = "policywatch_evaluator_alert_run_duration_seconds"
    run_count = registry.get_sample_value(f"{histogram}_count", {"alert": "alert-0000"})
    run_sum = registry.get_sample_value(f"{histogram}_sum", {"alert": "alert-0000"})
    per_run = (run_sum or 0) / (run_count or 1)
    print(f"runs: {len(rows)} (" + ", ".join(f"{len(v)} {k}" for k, v in groups.items()) + ")")
    print(f"baseline: one alert run takes {per_run * 1000:.1f} ms (alert-0000, mean)")
    for name, values in groups.items():
        if values:
            print(
                f"lateness {name:<20} p50 {statistics.median(values):6.3f}s  p99 {pct(values, 0.99):6.3f}s  "
                f"max {max(values):6.3f}s  (target p99 <= 2 s)"
            )
    engine.dispose()


if __name__ == "__main__":
    main()
