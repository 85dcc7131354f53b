"""``--ingest-processes``: bulk requests parsed, mapped and stored by worker processes answer exactly as
in-process ones do (stored once, errors per item, busy 429), and a worker that dies is replaced."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.ingest.pool import IngestPool
from devstack.procs import descendants, running
from devstack.services import wait_until
from tests.api.support import EvaluatorProcess, make_client
from tests.ingest.helpers import count, es_bulk, ndjson, recent_flow

FLOWS = "tigera_secure_ee_flows.cluster.20261207"


@pytest.fixture
def pooled(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url, ingest_processes=2, ingest_wait=1.0) as client:
        yield client


def _pool(client: TestClient) -> IngestPool:
    pool = client.app.state.ingest_pool  # type: ignore[attr-defined]
    assert isinstance(pool, IngestPool)
    return pool


def _workers(client: TestClient) -> list[int]:
    executor = _pool(client)._executor
    assert executor is not None
    return sorted(executor._processes)  # (the executor's own record of its worker processes)


def test_requests_are_stored_once_by_the_workers(pooled: TestClient, engine: sa.Engine) -> None:
    workers = _workers(pooled)
    assert len(workers) == 2 and os.getpid() not in workers
    batches = [es_bulk(FLOWS, [recent_flow(source_port=1000 * b + i) for i in range(200)]) for b in range(6)]
    with ThreadPoolExecutor(3) as senders:
        answers = list(senders.map(lambda body: pooled.post("/_bulk", content=body), batches))
    assert [a.status_code for a in answers] == [200] * 6
    assert all(not a.json()["errors"] for a in answers)
    assert {item["index"]["result"] for a in answers for item in a.json()["items"]} == {"created"}
    assert count(engine, "flows") == 1200
    again = pooled.post("/_bulk", content=batches[0])  # a shipper's retry
    assert again.status_code == 200 and {item["index"]["result"] for item in again.json()["items"]} == {"noop"}
    assert count(engine, "flows") == 1200


def test_errors_cross_back_from_the_workers(pooled: TestClient, engine: sa.Engine) -> None:
    mixed = es_bulk(FLOWS, [recent_flow(source_port=7), recent_flow(source_port="not a port")])
    answer = pooled.post("/_bulk", content=mixed)
    assert answer.status_code == 200 and answer.json()["errors"] is True
    first, second = (next(iter(item.values())) for item in answer.json()["items"])
    assert first["status"] == 201
    assert second["status"] == 400 and "source_port" in second["error"]["reason"]
    malformed = pooled.post("/_bulk", content=b'{"index": {"_index": "flows"}}\n{"a": 1}\nnot json\n')
    assert malformed.status_code == 400 and "line 3" in malformed.json()["error"]["reason"]
    report = pooled.post("/datasets/flows/_bulk", content=ndjson([recent_flow(source_port=8), "{bad"]))
    assert report.status_code == 200
    assert report.json()["ingested"] == 1 and report.json()["errors"][0]["line"] == 2
    assert count(engine, "flows") == 2


def test_a_busy_store_is_429_from_a_worker(pooled: TestClient, db_url: str, engine: sa.Engine) -> None:
    with engine.connect() as holder:  # another writer holds the database (SQLite) or the table (PostgreSQL)
        if db_url.startswith("sqlite"):
            holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.exec_driver_sql("LOCK TABLE logstore_flows IN ACCESS EXCLUSIVE MODE")
        try:
            answer = pooled.post("/_bulk", content=es_bulk(FLOWS, [recent_flow()]))
        finally:
            holder.rollback()
    assert answer.status_code == 429 and answer.headers["Retry-After"]
    assert answer.json()["error"]["type"] == "es_rejected_execution_exception"
    assert count(engine, "flows") == 0
    assert pooled.post("/_bulk", content=es_bulk(FLOWS, [recent_flow()])).status_code == 200
    assert count(engine, "flows") == 1


def test_a_killed_worker_is_replaced(pooled: TestClient, engine: sa.Engine) -> None:
    before = _workers(pooled)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    answers = [pooled.post("/_bulk", content=es_bulk(FLOWS, [recent_flow(source_port=p)])) for p in range(3)]
    statuses = [a.status_code for a in answers]
    # The pool notices the deaths either before the next request (started afresh: 200) or with it (503,
    # nothing stored, Retry-After); either way the following requests are stored by new workers.
    assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"]
    assert count(engine, "flows") == statuses.count(200)
    assert not set(_workers(pooled)) & set(before)


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="ingest-processes 2 needs a database the worker processes can share"):
        make_client("sqlite://", ingest_processes=2)


def test_the_server_stores_through_its_workers_and_they_die_with_it(evaluator: EvaluatorProcess) -> None:
    """The real ``policywatch-evaluator --ingest-processes 2``: requests stored, and a SIGKILL of the server
    leaves no worker behind (they hold database connections)."""
    url = evaluator.start("--ingest-processes", "2", "--no-scheduler")
    body = es_bulk(FLOWS, [recent_flow(source_port=p) for p in range(50)])
    answer = httpx.post(f"{url}/_bulk", content=body, timeout=30)
    assert answer.status_code == 200 and not answer.json()["errors"] and len(answer.json()["items"]) == 50
    assert evaluator.process is not None
    workers = descendants(evaluator.process.pid) - {evaluator.process.pid}
    assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
    evaluator.process.kill()
    evaluator.process.wait(timeout=10)
    wait_until(lambda: not running(workers), timeout=20, what=f"the workers {sorted(workers)} to exit")
