"""Benchmark: 100k Calico flow records through the Elasticsearch-compatible ``POST /_bulk`` into the embedded store.

The evaluator runs as ``policywatch-evaluator`` in its own process (one uvicorn worker, no scheduler); the
client sends Elasticsearch bulk bodies (action line + flow document, gzip as Fluent Bit and Vector send
them) on a few connections and checks that every record is stored exactly once. The baseline, in the same
run and on the same database kind, inserts the same records' rows (mapped beforehand) with one
executemany per table: what the database alone costs. Target: >= 50,000 records/s on SQLite.

    .venv/bin/python bench/ingest/bench_ingest.py [--records 100000] [--batch 5000] [--concurrency 2]
        [--ingest-processes 0,2]
        [--postgres | --sqlite-only] [--no-gzip]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root, for devstack
from devstack.procs import cpu_seconds, descendants  # noqa: E402
from devstack.services import EvaluatorServer, PostgresServer  # noqa: E402

TARGET = 50_000
T0 = datetime.now(UTC).replace(microsecond=0)


def flow_records(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Calico Enterprise flow documents as fluentd ships them: a few hundred workloads, many source ports."""
    rng = random.Random(seed)
    namespaces = [f"ns-{i}" for i in range(20)]
    out = []
    for i in range(count):
        end = T0 - timedelta(seconds=rng.randrange(0, 3600))
        namespace = rng.choice(namespaces)
        deny = rng.random() < 0.1
        out.append(
            {
                "start_time": int((end - timedelta(minutes=5)).timestamp()),
                "end_time": int(end.timestamp()),
                "action": "deny" if deny else "allow",
                "bytes_in": rng.randrange(0, 1 << 20),
                "bytes_out": rng.randrange(0, 1 << 20),
                "dest_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                "dest_name": f"db-{rng.randrange(30)}",
                "dest_name_aggr": "db-*",
                "dest_namespace": namespace,
                "dest_port": rng.choice((5432, 443, 80, 6379)),
                "dest_type": "wep",
                "dest_labels": {"labels": [f"app=db-{rng.randrange(5)}", "tier=data"]},
                "reporter": "dst",
                "num_flows": 1,
                "num_flows_completed": 1,
                "num_flows_started": 1,
                "http_requests_allowed_in": 0,
                "http_requests_denied_in": 0,
                "packets_in": rng.randrange(1, 1000),
                "packets_out": rng.randrange(1, 1000),
                "proto": "tcp",
                "policies": {"all_policies": [f"0|default|{namespace}/default.p{rng.randrange(9)}|allow"]},
                "source_ip": f"192.168.{rng.randrange(256)}.{rng.randrange(256)}",
                "source_name": f"web-{rng.randrange(50)}",
                "source_name_aggr": "web-*",
                "source_namespace": namespace,
                "source_port": 1024 + i % 60000,
                "source_type": "wep",
                "source_labels": {"labels": ["app=web"]},
                "original_source_ips": [],
                "num_original_source_ips": 0,
                "host": f"node-{rng.randrange(10)}",  # fields outside the schema are kept in the record
            }
        )
    return out


def bulk_bodies(records: list[dict[str, Any]], batch: int, compress: bool) -> list[bytes]:
    action = b'{"index":{"_index":"tigera_secure_ee_flows.cluster.20261203"}}\n'
    bodies = []
    for start in range(0, len(records), batch):
        body = b"".join(action + orjson.dumps(r) + b"\n" for r in records[start : start + batch])
        bodies.append(gzip.compress(body, compresslevel=1) if compress else body)
    return bodies


def migrated(url: str) -> None:
    from api.db import migrate

    migrate(url)


def stored(url: str) -> tuple[int, int]:
    """(records, distinct ingest identities: time and content hash) in the flows table."""
    import sqlalchemy as sa

    from api.db import make_engine
    from evaluator.logstore import table_for

    engine = make_engine(url)
    main = table_for("flows")
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(main)).scalar_one()
            identities = sa.select(main.c.end_time, main.c.ingest_hash).distinct().subquery()
            keys = conn.execute(sa.select(sa.func.count()).select_from(identities)).scalar_one()
    finally:
        engine.dispose()
    return int(count), int(keys)


def baseline(url: str, records: list[dict[str, Any]]) -> float:
    """records/s of one plain executemany (a row per statement) per table of the already mapped rows
    (no HTTP, no parsing, no keys): what the database alone costs, however the store batches its rows."""
    from api.db import make_engine
    from evaluator.logstore import table_for, values_table_for
    from evaluator.logstore.mapper import mapper, scalar_columns
    from evaluator.logstore.writer import insert_sql

    map_record = mapper("flows")
    mapped = [(map_record(r, i), orjson.dumps(r).decode()) for i, r in enumerate(records)]
    main_rows = [(n, *scalars, text) for n, ((scalars, _values), text) in enumerate(mapped, start=1)]
    value_rows = [(n, *value) for n, ((_scalars, values), _text) in enumerate(mapped, start=1) for value in values]
    main_columns = ("id", *scalar_columns("flows"), "record")
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql(insert_sql(conn, table_for("flows").name, main_columns), main_rows)
            values_sql = insert_sql(conn, values_table_for("flows").name, ("record_id", "key", "value", "ip_key"))
            conn.exec_driver_sql(values_sql, value_rows)
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
    return len(records) / elapsed


async def send(url: str, bodies: list[bytes], concurrency: int, compress: bool) -> float:
    headers = {"Content-Type": "application/x-ndjson"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    queue: Iterator[bytes] = iter(bodies)

    async def worker(client: httpx.AsyncClient) -> None:
        for body in queue:
            response = await client.post("/_bulk", content=body, headers=headers)
            answer = response.json()
            if response.status_code != 200 or answer["errors"]:
                raise RuntimeError(f"bulk failed: {response.status_code} {str(answer)[:300]}")

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started


def run(
    label: str, url_for: Any, records: list[dict[str, Any]], args: argparse.Namespace, tmp: Path, processes: int
) -> float:
    """records/s of one configuration (printed, with its baseline and CPU figures)."""
    bodies = bulk_bodies(records, args.batch, not args.no_gzip)
    api_url = url_for(f"api{processes}")
    migrated(api_url)
    # One uvicorn worker, no scheduler: the ingest path alone.
    evaluator = EvaluatorServer(
        api_url,
        log_path=tmp / f"{label}-{processes}.log",
        args=["--log-level", "warning", "--no-scheduler", "--ingest-processes", str(processes)],
        env={"POLICYWATCH_SCHEDULER_ENABLED": "false"},
    )
    try:
        pid = evaluator.process.proc.pid
        cpu_before = cpu_seconds(descendants(pid))
        elapsed = asyncio.run(send(evaluator.url, bodies, args.concurrency, not args.no_gzip))
        server_cpu = cpu_seconds(descendants(pid)) - cpu_before  # (with its ingest workers)
        again = asyncio.run(send(evaluator.url, bodies[:1], 1, not args.no_gzip))  # a retried batch
    finally:
        evaluator.stop()
    count, keys = stored(api_url)
    base_url = url_for(f"baseline{processes}")
    migrated(base_url)
    base_rate = baseline(base_url, records)
    rate = len(records) / elapsed
    print(
        f"{label:<10} {processes} ingest processes: /_bulk {rate:>7,.0f} records/s ({elapsed:.2f} s)   executemany "
        f"baseline {base_rate:>7,.0f} records/s   ratio {rate / base_rate:.2f}   stored {count:,} (distinct keys "
        f"{keys:,}; retried batch {again * 1000:.0f} ms, stored nothing twice: {count == len(records)})"
    )
    per_record = server_cpu / len(records)
    cores = os.cpu_count() or 1
    print(
        f"{'':<10} server CPU {per_record * 1e6:.1f} us per record ({server_cpu / elapsed:.2f} cores busy); "
        f"this machine's {cores} cores at that cost could serve at most {cores / per_record:,.0f} records/s, "
        f"the database alone (baseline) {1 / base_rate * 1e6:.1f} us per record"
    )
    return rate


def compare(label: str, url_for: Any, records: list[dict[str, Any]], args: argparse.Namespace, tmp: Path) -> None:
    """Each ``--ingest-processes`` count in turn, the later ones against the first."""
    rates = [run(label, url_for, records, args, tmp, processes) for processes in args.ingest_processes]
    for processes, rate in zip(args.ingest_processes[1:], rates[1:], strict=True):
        print(f"{'':<10} {processes} ingest processes / {args.ingest_processes[0]}: {rate / rates[0]:.2f}x")
    if label == "SQLite":
        best = max(rates)
        verdict = "met" if best >= TARGET else "NOT met"
        print(f"target SQLite >= {TARGET:,} records/s: {verdict} (best {best:,.0f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000, help="records per bulk request")
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent client connections")
    parser.add_argument(
        "--ingest-processes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[0, 2],
        help="the evaluator's --ingest-processes counts to run, in turn (default 0,2; 0: its own process)",
    )
    parser.add_argument("--no-gzip", action="store_true", help="send the bodies uncompressed")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--postgres", action="store_true", help="PostgreSQL only")
    which.add_argument("--sqlite-only", action="store_true", help="SQLite only")
    args = parser.parse_args()
    records = flow_records(args.records)
    print(
        f"policywatch ingest benchmark: {args.records:,} Calico flow records, {args.batch:,} per /_bulk request"
        f"{' (gzip)' if not args.no_gzip else ''}, {args.concurrency} connections, one uvicorn worker, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if not args.postgres:
            compare("SQLite", lambda kind: f"sqlite:///{tmp / kind}.db", records, args, tmp)
        if not args.sqlite_only:
            server = PostgresServer().start()
            try:
                compare("PostgreSQL", lambda kind: server.create_database(f"bench_ingest_{kind}"), records, args, tmp)
            finally:
                server.stop()
    print(
        f"load average at the end {os.getloadavg()[0]:.1f} (a busy machine lowers the figures; the ratio holds better)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
