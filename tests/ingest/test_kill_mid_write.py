"""kill -9 of the evaluator in the middle of writing a bulk request: nothing of it is stored, and the shipper's
resend (to the restarted evaluator) stores every record exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from api.db import make_engine
from tests.api.support import EvaluatorProcess
from tests.ingest.helpers import es_bulk, recent_flow

RECORDS = 6_000


def _stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM logstore_flows")).scalar_one())


def test_kill_during_the_write_leaves_nothing_then_the_resend_stores_all_once(
    tmp_path: Path, evaluator: EvaluatorProcess
) -> None:
    url = evaluator.start("--no-scheduler")
    body = es_bulk("tigera_secure_ee_flows.cluster.1", [recent_flow(source_port=p % 65535) for p in range(RECORDS)])
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    wal = tmp_path / "server.db-wal"
    outcome: list[object] = []

    def send() -> None:
        try:
            outcome.append(httpx.post(f"{url}/_bulk", content=body, timeout=120).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        # The write is under way once the transaction's pages spill into the WAL while nothing is committed.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not outcome:
            if wal.exists() and wal.stat().st_size > 1 << 20 and _stored(engine) == 0:
                assert evaluator.process is not None
                evaluator.process.kill()
                evaluator.process.wait(timeout=10)
                break
            time.sleep(0.01)
        sender.join(timeout=30)
        assert outcome and isinstance(outcome[0], httpx.HTTPError), f"not killed mid-write: {outcome}"
        assert _stored(engine) == 0  # the open transaction died with the process
        url = evaluator.start("--no-scheduler")
        answer = httpx.post(f"{url}/_bulk", content=body, timeout=120)  # the shipper resends the batch
        assert answer.status_code == 200 and answer.json()["errors"] is False
        assert _stored(engine) == RECORDS
    finally:
        sender.join(timeout=30)
        engine.dispose()
