"""Fast loading of generated flow rows for the engine benchmarks.

Each distinct record goes through ``record_to_rows`` (the log store's own mapping); the million rows
are copies of a few thousand of them with their times spread over the window, inserted in bulk.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from evaluator.db import metadata
from evaluator.logstore.tables import column_for, record_to_rows, table_for, values_table_for

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@contextmanager
def bench_database(*, database_url: str | None, postgres: bool) -> Iterator[str]:
    """The benchmark's database URL: given, a throwaway PostgreSQL (``postgres``), or a temporary SQLite file."""
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        if not postgres:
            yield database_url or f"sqlite:///{tmp}/bench.db"
            return
        from devstack.services import PostgresServer

        server = PostgresServer().start()
        try:
            yield server.create_database("bench")
        finally:
            server.stop()


CHUNK = 20_000


def flow_record(rng: random.Random, end: datetime, namespaces: int, sources: int) -> dict[str, Any]:
    return {
        "start_time": (end - timedelta(minutes=5)).isoformat(),
        "end_time": end.isoformat(),
        "action": rng.choice(["allow", "allow", "allow", "deny"]),
        "bytes_in": rng.randrange(100, 100_000),
        "bytes_out": rng.randrange(100, 100_000),
        "dest_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
        "dest_name": "db-0",
        "dest_name_aggr": "db-*",
        "dest_namespace": f"ns-{rng.randrange(namespaces)}",
        "dest_port": rng.choice([80, 443, 5432, 53]),
        "dest_type": "wep",
        "dest_labels": {"labels": [f"app=a{rng.randrange(20)}"]},
        "reporter": "dst",
        "num_flows": rng.randrange(1, 10),
        "num_flows_completed": 1,
        "num_flows_started": 1,
        "packets_in": rng.randrange(1, 1000),
        "packets_out": rng.randrange(1, 1000),
        "proto": "tcp",
        "policies": {"all_policies": ["0|default|default.allow|allow"]},
        "source_ip": f"10.{(n := rng.randrange(sources)) >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        "source_name": "-",
        "source_name_aggr": "pub",
        "source_namespace": f"ns-{rng.randrange(namespaces)}",
        "source_port": rng.randrange(1024, 65535),
        "source_type": rng.choice(["net", "wep"]),
        "source_labels": {"labels": []},
    }


def load_flows(
    engine: sa.Engine,
    *,
    rows: int,
    window: timedelta,
    namespaces: int = 50,
    sources: int = 5_000,
    templates: int = 4_000,
    seed: int = 1,
) -> None:
    """``rows`` flows with end_time spread over ``(T0 - window, T0]``."""
    metadata.create_all(engine)
    rng = random.Random(seed)
    distinct = [record_to_rows("flows", flow_record(rng, T0, namespaces, sources)) for _ in range(templates)]
    main, values = table_for("flows"), values_table_for("flows")
    time_key = column_for("flows", "end_time").name
    start = (T0 - window).timestamp()
    span = window.total_seconds()
    next_id = 1
    with engine.begin() as conn:
        for offset in range(0, rows, CHUNK):
            batch: list[dict[str, Any]] = []
            value_rows: list[dict[str, Any]] = []
            for i in range(offset, min(rows, offset + CHUNK)):
                template = distinct[i % len(distinct)]
                row = dict(template.row)
                row["id"] = next_id
                row[time_key] = start + span * (i + 1) / rows
                batch.append(row)
                value_rows.extend({**v, "record_id": next_id} for v in template.values)
                next_id += 1
            conn.execute(main.insert(), batch)
            conn.execute(values.insert(), value_rows)
