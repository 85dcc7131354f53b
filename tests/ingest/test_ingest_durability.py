"""An ingest commit on SQLite skips the fsync (WAL, synchronous=NORMAL) but what was answered 2xx survives
a kill -9 of the evaluator; other writers on the connection keep the engine's setting."""

from __future__ import annotations

from pathlib import Path

import httpx
import sqlalchemy as sa

from api.db import make_engine, migrate
from evaluator.engine.ingest import IndexPatterns, parse_es_bulk, store_documents
from tests.api.support import EvaluatorProcess
from tests.ingest.helpers import count, es_bulk, recent_flow

INDEX = "tigera_secure_ee_flows.cluster.1"


def test_answered_2xx_then_killed_every_record_is_stored(tmp_path: Path, evaluator: EvaluatorProcess) -> None:
    url = evaluator.start("--no-scheduler")
    body = es_bulk(INDEX, [recent_flow(source_port=p) for p in range(1_000, 3_000)])
    answer = httpx.post(f"{url}/_bulk", content=body, timeout=120)
    assert answer.status_code == 200 and answer.json()["errors"] is False
    assert evaluator.process is not None
    evaluator.process.kill()  # no clean shutdown, no checkpoint
    evaluator.process.wait(timeout=10)
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        assert count(engine, "flows") == 2_000
    finally:
        engine.dispose()


def test_the_connection_gets_its_synchronous_setting_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    engine = make_engine(url, poolclass=sa.pool.StaticPool)  # one connection: the one ingest used
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            before = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        documents = parse_es_bulk(es_bulk(INDEX, [recent_flow()]), default_index=None, patterns=IndexPatterns())
        store_documents(engine, documents)
        assert count(engine, "flows") == 1
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == before
    finally:
        engine.dispose()
