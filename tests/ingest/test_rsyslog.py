"""A real shipper, unchanged: Debian's rsyslogd with omelasticsearch (rsyslog-elasticsearch) tails a file of
Calico flow lines with imfile and ships it to policywatch's ``/_bulk`` with Basic auth; every line is stored
exactly once."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.db import make_engine
from tests.api.support import EvaluatorProcess
from tests.ingest.helpers import recent_flow

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
MODULES = Path("/usr/lib/x86_64-linux-gnu/rsyslog")
TOKEN = "rsyslog-write-token-0123456789"
LINES = 300


def _config(tmp: Path, port: int) -> str:
    return f"""
global(workDirectory="{tmp / "work"}")
module(load="imfile" mode="polling" PollingInterval="1")
module(load="omelasticsearch")
template(name="document" type="string" string="%msg%")
input(type="imfile" File="{tmp / "flows.log"}" Tag="calico-flows" ruleset="ship" freshStartTail="off")
ruleset(name="ship") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{port}"
         searchIndex="tigera_secure_ee_flows.cluster.20251203" template="document" bulkmode="on"
         uid="rsyslog" pwd="{TOKEN}" errorfile="{tmp / "es-errors.json"}"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"""


def test_rsyslog_omelasticsearch_ships_every_line_once(tmp_path: Path, evaluator: EvaluatorProcess) -> None:
    if not (MODULES / "omelasticsearch.so").exists() or not Path(RSYSLOGD).exists():
        pytest.fail("rsyslogd with omelasticsearch is missing: run ./scripts/setup (rsyslog-elasticsearch)")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"write {TOKEN}\n")
    url = evaluator.start("--token-file", str(tokens), "--no-scheduler")
    port = int(url.rsplit(":", 1)[1])
    lines = [json.dumps(recent_flow(source_port=20000 + i), separators=(",", ":")) for i in range(LINES)]
    (tmp_path / "flows.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "work").mkdir()
    config = tmp_path / "rsyslog.conf"
    config.write_text(_config(tmp_path, port))
    log = (tmp_path / "rsyslogd.log").open("wb")
    process = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(config), "-i", str(tmp_path / "rsyslogd.pid")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        deadline = time.monotonic() + 40
        stored = 0
        while time.monotonic() < deadline and stored < LINES:
            assert process.poll() is None, (tmp_path / "rsyslogd.log").read_text()
            time.sleep(0.5)
            with engine.connect() as conn:
                stored = conn.execute(sa.text("SELECT count(*) FROM logstore_flows")).scalar_one()
        time.sleep(1.5)  # anything sent twice would show up now
        with engine.connect() as conn:
            ports = conn.execute(sa.text("SELECT source_port FROM logstore_flows ORDER BY source_port")).scalars().all()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
        engine.dispose()
    assert ports == list(range(20000, 20000 + LINES)), (tmp_path / "rsyslogd.log").read_text()[-2000:]
    assert not (tmp_path / "es-errors.json").exists()
