"""``policywatchctl ingest`` against a real evaluator whose store is locked for a while: the 429s are retried
after Retry-After, and every line is stored once."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.ctl.main import main as ctl
from api.db import make_engine
from tests.api.support import EvaluatorProcess
from tests.ingest.helpers import recent_flow


def test_ctl_retries_a_busy_store_and_stores_each_line_once(
    tmp_path: Path, evaluator: EvaluatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    url = evaluator.start("--no-scheduler", env={"POLICYWATCH_INGEST_WAIT": "0.3"})
    path = tmp_path / "flows.ndjson"
    path.write_text("".join(json.dumps(recent_flow(source_port=p)) + "\n" for p in range(60)))
    holder = sqlite3.connect(tmp_path / "server.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the store for 2.5 s
    release = threading.Timer(2.5, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        code = ctl(
            ["ingest", "--server", url, "--dataset", "flows", str(path), "--no-progress", "--chunk-bytes", "20000"]
        )
    finally:
        release.join()
        holder.close()
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "60 flows records ingested, 0 lines rejected"
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        with engine.connect() as conn:
            ports = conn.execute(sa.text("SELECT source_port FROM logstore_flows ORDER BY 1")).scalars().all()
    finally:
        engine.dispose()
    assert ports == list(range(60))
    assert "database is locked" in evaluator.log.read_text()  # it was refused (429) before it was stored
