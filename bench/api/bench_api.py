"""Benchmark: the GlobalAlert API under one uvicorn worker, GET one alert and LIST 1,000 alerts.

Each server runs in its own process (one uvicorn worker, SQLite database seeded with 1,000 GlobalAlerts);
the client (async httpx, a fixed number of concurrent connections) runs in this process. The baseline is
a bare FastAPI app in the same uvicorn configuration, returning the same JSON bytes without middleware,
database or validation, measured by the same client in the same run: ratios hold on any machine.
Targets: GET one alert >= 1,000 requests/s with p99 <= 20 ms.

Mixed load (``--mixed``, issue 17.6): the same 1,000 alerts, a fixed-rate mix of reads (GET one) and writes
(POST a new alert, DELETE it again) at ``--rate`` requests/s, against the API with the scheduler running
(period 1m, so all 1,000 run every minute over seeded flow logs) and against ``--no-scheduler``, measured
in the same run: p99 of writes with the scheduler beside the one without (target <= 100 ms on SQLite).

    .venv/bin/python bench/api/bench_api.py [--seconds 5] [--concurrency 8] [--postgres]
    .venv/bin/python bench/api/bench_api.py --mixed [--seconds 30] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from devstack.services import PostgresServer, free_port

ALERTS = 1000
ONE = "alert-0500"


def alert(i: int, *, period: str = "5m") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalAlert",
        "metadata": {"name": f"alert-{i:04d}", "labels": {"team": f"t{i % 7}"}},
        "spec": {
            "description": "ssh from ${source_namespace}/${source_name_aggr}: ${sum} flows",
            "severity": 1 + i % 100,
            "dataSet": "flows",
            "period": period,
            "lookback": "15m",
            "query": f"action=deny AND dest_port={i % 65535} AND source_namespace NOTIN {{'kube-*'}}",
            "aggregateBy": ["source_namespace", "source_name_aggr"],
            "field": "num_flows",
            "metric": "sum",
            "condition": "gt",
            "threshold": i,
        },
    }


def seed(url: str, *, period: str = "5m", flows: int = 0) -> None:
    from api.db import make_engine, migrate
    from api.resources import GLOBAL_ALERT, parse_object
    from api.store import ObjectStore

    migrate(url)
    engine = make_engine(url)
    store = ObjectStore(engine, GLOBAL_ALERT)
    for i in range(ALERTS):
        store.create(obj=parse_object(alert(i, period=period), kind=GLOBAL_ALERT))
    if flows:
        from datetime import UTC, datetime, timedelta

        from evaluator.logstore import insert_records

        now = datetime.now(UTC)
        records = [
            {
                "end_time": int((now - timedelta(seconds=i % 600)).timestamp()),
                "action": "deny",
                "dest_port": i % 1000,
                "source_namespace": f"ns{i % 13}",
                "source_name_aggr": f"pod-{i % 17}",
                "num_flows": 1,
            }
            for i in range(flows)
        ]
        with engine.begin() as conn:
            insert_records(conn, "flows", records)
    engine.dispose()


def serve(kind: str, port: int, url: str) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response
    from prometheus_client import CollectorRegistry

    from api.app import create_app
    from api.settings import Settings

    if kind == "api":
        app = create_app(Settings(database_url=url), registry=CollectorRegistry(), service_factory=lambda _s: [])
    elif kind == "scheduler":  # the production default: the scheduler (and retention) beside the API
        app = create_app(Settings(database_url=url), registry=CollectorRegistry())
    else:
        # Same bytes as the real answers, fetched once from the real app, served from memory.
        from fastapi.testclient import TestClient

        real = create_app(Settings(database_url=url), registry=CollectorRegistry(), service_factory=lambda _s: [])
        with TestClient(real) as client:
            one = client.get(f"/globalalerts/{ONE}").content
            many = client.get("/globalalerts").content
        app = FastAPI()

        @app.get("/globalalerts/{name}")
        def get_one(name: str) -> Response:
            return Response(one, media_type="application/json")

        @app.get("/globalalerts")
        def get_list() -> Response:
            return Response(many, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


def start(kind: str, url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), "--db", url])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/globalalerts/{ONE}", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One keep-alive HTTP/1.1 GET on an open connection; returns the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, host: str, path: str, body: bytes = b""
) -> int:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return await _get(reader, writer, head.encode() + b"\r\n" + body)


async def mixed_load(base: str, seconds: float, rate: float, write_share: float = 0.3) -> dict[str, list[float]]:
    """Open-loop load: a request every ``1/rate`` s whatever the answers take (as real clients do), each on a
    free keep-alive connection; a write share of them POST a new alert or DELETE the previous one.
    Returns latencies (s) by "read" / "write", and the status codes other than 2xx/404 under "errors"."""
    host, port = base.removeprefix("http://").split(":")
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    out: dict[str, list[float]] = {"read": [], "write": [], "errors": []}
    created: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(kind: str, method: str, path: str, body: bytes = b"") -> None:
        reader, writer = await idle.get()
        began = time.perf_counter()
        status = await _request(reader, writer, method, host, path, body)
        out[kind].append(time.perf_counter() - began)
        if status >= 400 and status != 404:
            out["errors"].append(float(status))
        idle.put_nowait((reader, writer))

    started = time.perf_counter()
    for n in range(int(seconds * rate)):
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        if (n * write_share) % 1 >= 1 - write_share:  # an even spread of writes among the requests
            if created and n % 2:
                tasks.append(asyncio.create_task(one("write", "DELETE", f"/globalalerts/{created.pop(0)}")))
            else:
                body = alert(10_000 + n, period="1m")
                created.append(body["metadata"]["name"])
                tasks.append(asyncio.create_task(one("write", "POST", "/globalalerts", json.dumps(body).encode())))
        else:
            tasks.append(asyncio.create_task(one("read", "GET", f"/globalalerts/alert-{n % ALERTS:04d}")))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else float("nan")


def measure_mixed(url: str, seconds: float, rate: float) -> dict[str, dict[str, list[float]]]:
    """The mixed load against ``--no-scheduler`` and with the scheduler, each on a fresh copy of one seed."""
    import shutil

    seed(url, period="1m", flows=20_000)
    source = Path(url.removeprefix("sqlite:///"))
    results: dict[str, dict[str, list[float]]] = {}
    for kind in ("api", "scheduler"):
        copy = source.with_name(f"{kind}.db")
        shutil.copyfile(source, copy)
        process, base = start(kind, f"sqlite:///{copy}")
        try:
            results[kind] = asyncio.run(mixed_load(base, seconds, rate))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        results[kind]["runs"] = [float(_alert_runs(f"sqlite:///{copy}"))]
    return results


def _alert_runs(url: str) -> int:
    """Alert-periods the scheduler committed (to show it kept working while the API was measured)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT count(*) FROM alert_runs")) or 0)
    finally:
        engine.dispose()


def report_mixed(results: dict[str, dict[str, list[float]]], seconds: float, rate: float) -> None:
    print(f"policywatch API mixed load: {ALERTS} GlobalAlerts (period 1m) in SQLite, one uvicorn worker, "
          f"{rate:.0f} req/s for {seconds:.0f} s (30% writes), {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'server':<16} {'kind':<6} {'count':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    names = {"api": "--no-scheduler", "scheduler": "with scheduler"}
    for kind in ("api", "scheduler"):
        for part in ("read", "write"):
            values = results[kind][part]
            print(
                f"{names[kind]:<16} {part:<6} {len(values):>6} {_p(values, 0.5):>8.1f} {_p(values, 0.99):>8.1f} "
                f"{max(values, default=0) * 1000:>8.1f} {len(results[kind]['errors']) if part == 'write' else '':>7}"
            )
    print(f"alert-periods the scheduler committed meanwhile: {results['scheduler']['runs'][0]:.0f}")
    with_s, without = _p(results["scheduler"]["write"], 0.99), _p(results["api"]["write"], 0.99)
    verdict = "met" if with_s <= 100 else "NOT met"
    print(f"p99 of writes: {with_s:.1f} ms with the scheduler, {without:.1f} ms without ({with_s / without:.2f}x)")
    print(f"target p99 of writes with the scheduler <= 100 ms: {verdict}")


async def load(base: str, path: str, seconds: float, concurrency: int) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, errors) for ``concurrency`` keep-alive connections looping over one path.

    A minimal HTTP/1.1 client on raw asyncio streams: a general-purpose client (httpx) costs more CPU per
    request than the server under test and would measure itself.
    """
    host, port = base.removeprefix("http://").split(":")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    for reader, writer in connections:  # warm up
        for _ in range(5):
            await _get(reader, writer, request)
    stop = time.perf_counter() + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            began = time.perf_counter()
            status = await _get(reader, writer, request)
            latencies.append(time.perf_counter() - began)
            if status != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in connections))
    elapsed = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / elapsed, p50, p99, errors


def measure(url: str, seconds: float, concurrency: int) -> dict[tuple[str, str], tuple[float, float, float, int]]:
    seed(url)
    results: dict[tuple[str, str], tuple[float, float, float, int]] = {}
    for kind in ("baseline", "api"):
        process, base = start(kind, url)
        try:
            for label, path in (("GET one", f"/globalalerts/{ONE}"), ("LIST 1000", "/globalalerts")):
                duration = seconds if label == "GET one" else seconds / 2
                results[(kind, label)] = asyncio.run(load(base, path, duration, concurrency))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent client connections")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL instead of SQLite")
    parser.add_argument("--mixed", action="store_true", help="mixed read/write load, scheduler vs --no-scheduler")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s of the mixed load")
    parser.add_argument("--serve", choices=("api", "baseline", "scheduler"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.db)
        return 0

    if args.mixed:
        with tempfile.TemporaryDirectory() as tmp:
            mixed = measure_mixed(f"sqlite:///{Path(tmp) / 'bench.db'}", args.seconds, args.rate)
        report_mixed(mixed, args.seconds, args.rate)
        return 0
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        if args.postgres:
            server = PostgresServer().start()
            url = server.create_database("bench_api")
        try:
            results = measure(url, args.seconds, args.concurrency)
        finally:
            if server is not None:
                server.stop()
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"policywatch API benchmark: {ALERTS} GlobalAlerts in {database}, one uvicorn worker, "
          f"{args.concurrency} concurrent connections, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'scenario':<12} {'server':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs baseline':>12}")
    for label in ("GET one", "LIST 1000"):
        for kind in ("baseline", "api"):
            rps, p50, p99, errors = results[(kind, label)]
            ratio = rps / results[("baseline", label)][0]
            print(f"{label:<12} {kind:<9} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} {errors:>7} {ratio:>11.2f}x")
    rps, _, p99, errors = results[("api", "GET one")]
    ok = rps >= 1000 and p99 <= 20 and errors == 0
    verdict = "met" if ok else "NOT met"
    print(f"target GET one >= 1000 req/s and p99 <= 20 ms: {verdict} ({rps:.0f} req/s, p99 {p99:.1f} ms)")
    print(json.dumps({f"{k} {label}": round(v[0]) for (k, label), v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
