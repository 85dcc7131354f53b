"""Benchmark: one aggregated alert run over 1,000,000 flow rows in the embedded log store.

Target: <= 1 s for ``sum(bytes_out) by source_namespace`` over a window holding every row. Baseline in
the same run, over the same rows: ``SELECT COUNT(*)`` with the same time range (what the database needs
just to visit them). Also shown: a multi-valued key (``dest_labels.labels``, a join) and a narrow query.

    .venv/bin/python bench/engine/bench_aggregate.py [--rows 1000000] [--database-url URL | --postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_bench_data import T0, bench_database, load_flows

from evaluator.alerts import GlobalAlertSpec
from evaluator.engine.execute import run
from evaluator.engine.model import Window
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.logstore.tables import column_for, table_for

WINDOW = Window.ending_at(T0, timedelta(minutes=10))


def timed(work: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL for the run")
    args = parser.parse_args()
    with bench_database(database_url=args.database_url, postgres=args.postgres) as url:
        measure(args, url)


def measure(args: argparse.Namespace, url: str) -> None:
    engine = sa.create_engine(url)
    started = time.perf_counter()
    load_flows(engine, rows=args.rows, window=timedelta(minutes=10))
    print(f"loaded {args.rows:,} flow rows into {engine.dialect.name} in {time.perf_counter() - started:.1f}s")
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    store = SqlLogStore(engine)
    time_col = column_for("flows", "end_time")

    def baseline() -> None:
        with engine.connect() as conn:
            conn.execute(
                sa.select(sa.func.count())
                .select_from(table_for("flows"))
                .where(time_col > WINDOW.start.timestamp(), time_col <= WINDOW.end.timestamp())
            ).scalar()

    alerts = {
        "sum(bytes_out) by source_namespace": GlobalAlertSpec(
            description="${source_namespace} sent ${sum}",
            severity=50,
            dataSet="flows",
            aggregateBy=("source_namespace",),
            field="bytes_out",
            metric="sum",
            condition="gt",
            threshold=1e6,
        ),
        "count by source_namespace, dest_namespace": GlobalAlertSpec(
            description="x",
            severity=50,
            dataSet="flows",
            query="action=allow",
            aggregateBy=("source_namespace", "dest_namespace"),
            metric="count",
            condition="gt",
            threshold=100,
        ),
        "count by dest_labels.labels (multi-valued)": GlobalAlertSpec(
            description="x",
            severity=50,
            dataSet="flows",
            aggregateBy=("dest_labels.labels",),
            metric="count",
            condition="gt",
            threshold=100,
        ),
        "narrow: dest_port=5432 AND source_type=net": GlobalAlertSpec(
            description="x",
            severity=50,
            dataSet="flows",
            query="dest_port=5432 AND source_type=net",
            aggregateBy=("dest_namespace", "source_ip"),
        ),
    }
    base = timed(baseline, args.repeat)
    print(f"{'baseline SELECT COUNT(*) over the window':<48} {base * 1000:>9.1f} ms   1.00x")
    for name, alert in alerts.items():
        findings = len(run(alert, WINDOW, store).findings)
        took = timed(lambda alert=alert: run(alert, WINDOW, store), args.repeat)
        target = "  (target <= 1000 ms)" if name.startswith("sum(") else ""
        print(f"{name:<48} {took * 1000:>9.1f} ms {took / base:>6.2f}x  {findings} findings{target}")
    engine.dispose()


if __name__ == "__main__":
    main()
