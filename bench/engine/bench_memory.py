"""Benchmark: memory stays flat while the embedded store pages through rows and buckets.

Peak Python allocation (tracemalloc) while consuming ``hits()`` over 20,000 and then 500,000 flow rows,
and ``aggregate()`` over 1,000 and then every (~65,000) source_ip bucket, without keeping them. (The
database's own work memory is not Python's: tracemalloc shows what the engine holds while paging.)
Flat paging means the peaks stay about equal whatever the count (ratio ~1x); the baseline is the smaller
run of each pair.

    .venv/bin/python bench/engine/bench_memory.py [--rows 500000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_bench_data import T0, load_flows

from evaluator.engine.model import Window
from evaluator.engine.sqlstore import SqlLogStore

WINDOW = Window.ending_at(T0, timedelta(minutes=10))


def peak(make: Callable[[], Iterator[Any]]) -> tuple[int, float]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    count = 0
    for _ in make():
        count += 1
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return count, top / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="pw-bench-")
    url = args.database_url or f"sqlite:///{tmp.name}/bench.db"
    engine = sa.create_engine(url)
    load_flows(engine, rows=args.rows, window=timedelta(minutes=10), sources=100_000, templates=100_000)
    store = SqlLogStore(engine, page_rows=2_000)
    print(f"{args.rows:,} flow rows in {engine.dialect.name}; page size 2,000 rows")
    small = 20_000
    pairs = [
        (
            "hits (whole records)",
            lambda: store.hits(dataset="flows", query=None, window=WINDOW, limit=small),
            lambda: store.hits(dataset="flows", query=None, window=WINDOW, limit=args.rows),
        ),
        (
            "buckets by source_ip",
            lambda: store.aggregate(
                dataset="flows",
                query=None,
                window=WINDOW,
                aggregate_by=("source_ip",),
                metric="count",
                field=None,
                limit=1_000,
            ),
            lambda: store.aggregate(
                dataset="flows",
                query=None,
                window=WINDOW,
                aggregate_by=("source_ip",),
                metric="count",
                field=None,
                limit=10**9,
            ),
        ),
    ]
    for name, few, many in pairs:
        n_few, p_few = peak(few)
        n_many, p_many = peak(many)
        print(
            f"{name:<22} {n_few:>8,} items: peak {p_few:7.2f} MB | {n_many:>8,} items: peak {p_many:7.2f} MB"
            f" | ratio {p_many / p_few:5.2f}x for {n_many / max(1, n_few):6.1f}x the items"
        )
    engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
