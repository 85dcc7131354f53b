"""Benchmark: the GlobalAlert API under one uvicorn worker, GET one alert and LIST 1,000 alerts.

Each server runs in its own process (one uvicorn worker, SQLite database seeded with 1,000 GlobalAlerts);
the client (async httpx, a fixed number of concurrent connections) runs in this process. The baseline is
a bare FastAPI app in the same uvicorn configuration, returning the same JSON bytes without middleware,
database or validation, measured by the same client in the same run: ratios hold on any machine.
Targets: GET one alert >= 1,000 requests/s with p99 <= 20 ms.

    .venv/bin/python bench/api/bench_api.py [--seconds 5] [--concurrency 8] [--postgres]
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


def alert(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalAlert",
        "metadata": {"name": f"alert-{i:04d}", "labels": {"team": f"t{i % 7}"}},
        "spec": {
            "description": "ssh from ${source_namespace}/${source_name_aggr}: ${sum} flows",
            "severity": 1 + i % 100,
            "dataSet": "flows",
            "period": "5m",
            "lookback": "15m",
            "query": f"action=deny AND dest_port={i % 65535} AND source_namespace NOTIN {{'kube-*'}}",
            "aggregateBy": ["source_namespace", "source_name_aggr"],
            "field": "num_flows",
            "metric": "sum",
            "condition": "gt",
            "threshold": i,
        },
    }


def seed(url: str) -> None:
    from api.db import make_engine, migrate
    from api.resources import GLOBAL_ALERT, parse_object
    from api.store import ObjectStore

    migrate(url)
    engine = make_engine(url)
    store = ObjectStore(engine, GLOBAL_ALERT)
    for i in range(ALERTS):
        store.create(obj=parse_object(alert(i), kind=GLOBAL_ALERT))
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
    parser.add_argument("--serve", choices=("api", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.db)
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
