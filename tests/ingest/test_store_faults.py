"""The store failing under a bulk request: a real lock, a database refusing connections, a write failing midway.
Each time the answer is 429/503 with Retry-After, nothing of the request is stored, and the resent request
is stored exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from api.app import create_app
from api.db import make_engine, migrate
from api.settings import Settings
from devstack.services import PostgresServer
from tests.api.support import make_client, no_services
from tests.ingest.helpers import count, es_bulk, ndjson, recent_flow

INDEX = "tigera_secure_ee_flows.cluster.20251203"


def test_a_write_failing_midway_stores_nothing_then_the_retry_stores_all(db_url: str, engine: sa.Engine) -> None:
    flows = [recent_flow(source_port=port) for port in range(1000, 4000)]
    body = es_bulk(INDEX, flows)
    with engine.begin() as conn:  # a real failure on the 2,500th row, inside the database
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON logstore_flows WHEN NEW.source_port = 3500 "
                "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN IF NEW.source_port = 3500 THEN "
                "RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON logstore_flows FOR EACH ROW EXECUTE FUNCTION boom()"
            )
    with make_client(db_url) as client:
        failed = client.post("/_bulk", content=body)
        assert failed.status_code == 503 and failed.headers["retry-after"] == "5"
        assert failed.json()["error"]["type"] == "unavailable_shards_exception"
        plain = client.post("/datasets/flows/_bulk", content=ndjson(flows))
        assert plain.status_code == 503 and "nothing was stored" in plain.json()["message"]
        assert "postgres@" not in plain.text and "127.0.0.1" not in plain.text  # no host or user shown
        assert count(engine, "flows") == 0
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER boom" + ("" if conn.dialect.name == "sqlite" else " ON logstore_flows"))
        assert client.post("/_bulk", content=body).json()["errors"] is False
        assert client.post("/_bulk", content=body).json()["errors"] is False  # the shipper's own retry
    assert count(engine, "flows") == 3000


def test_sqlite_locked_is_429_with_retry_after_then_nothing_lost(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    migrate(url)
    body = es_bulk(INDEX, [recent_flow(source_port=p) for p in range(10)])
    holder = sqlite3.connect(tmp_path / "pw.db", isolation_level=None)
    try:
        with make_client(url, ingest_wait=0.3) as client:
            holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
            busy = client.post("/_bulk", content=body)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "2"
            assert busy.json()["error"]["type"] == "es_rejected_execution_exception"
            plain = client.post("/datasets/flows/_bulk", content=body)
            assert plain.status_code == 429 and plain.headers["retry-after"] == "2"
            assert client.get("/healthz").status_code == 200
            holder.execute("ROLLBACK")
            assert client.post("/_bulk", content=body).json()["errors"] is False
    finally:
        holder.close()
    engine = make_engine(url)
    try:
        assert count(engine, "flows") == 10
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_refusing_connections_is_503_then_the_resent_batch_is_stored_once(
    postgres_server: PostgresServer, pg_database: str
) -> None:
    migrate(pg_database)
    name = make_url(pg_database).database
    admin = sa.create_engine(str(make_url(pg_database).set(database="postgres")), isolation_level="AUTOCOMMIT")
    engine = make_engine(pg_database)
    body = es_bulk(INDEX, [recent_flow(source_port=p) for p in range(20)])
    try:
        with make_client(pg_database) as client:
            assert client.post("/_bulk", content=es_bulk(INDEX, [recent_flow(source_port=99)])).status_code == 200
            engine.dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            down = client.post("/_bulk", content=body)
            assert down.status_code == 503 and down.headers["retry-after"] == "5"
            assert name not in down.text
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            for _ in range(2):  # the shipper resends; its first resend may race the outage's end
                back = client.post("/_bulk", content=body)
                assert back.status_code == 200 and back.json()["errors"] is False
        assert count(engine, "flows") == 21
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.dispose()
        engine.dispose()


def test_all_ingest_slots_busy_is_429_with_retry_after(tmp_path: Path) -> None:
    """One slot, held by a request whose body is still arriving: the next request waits, then gets 429."""
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    migrate(url)
    app = create_app(
        Settings(database_url=url, ingest_concurrency=1, ingest_wait=0.3),
        registry=CollectorRegistry(),
        service_factory=no_services,
    )
    body = es_bulk(INDEX, [recent_flow(source_port=1)])

    async def slow_body() -> AsyncIterator[bytes]:
        await asyncio.sleep(1.0)  # a slow client: the slot is held while its body arrives
        yield body

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pw") as client:
            first = asyncio.create_task(client.post("/_bulk", content=slow_body()))
            await asyncio.sleep(0.2)
            second = await client.post("/_bulk", content=body)
            return await first, second

    first, second = asyncio.run(scenario())
    assert first.status_code == 200 and first.json()["errors"] is False
    assert second.status_code == 429 and second.headers["retry-after"] == "2"
    assert second.json()["error"]["type"] == "es_rejected_execution_exception"
