"""``policywatchctl ingest`` and ``policywatchctl test`` against a real ``policywatch-evaluator`` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.ctl.main import main as ctl
from devstack.services import free_port, http_get, wait_until
from evaluator.events import rfc3339
from tests.evaluator.engine.engine_data import dns

NOW = datetime.now(UTC).replace(microsecond=0)
EVALUATOR = Path(sys.executable).with_name("policywatch-evaluator")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "POLICYWATCH_SCHEDULER_ENABLED": "false"}
    with open(tmp_path / "evaluator.log", "wb") as log:
        proc = subprocess.Popen(
            [str(EVALUATOR), "--port", str(port), "--database-url", f"sqlite:///{tmp_path}/pw.db"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(f"{url}/healthz")[0] == 200, timeout=30, what="policywatch-evaluator")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_ingest_in_chunks_with_progress_then_dry_run(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        json.dumps(dns(NOW - timedelta(seconds=10 + i), qname=f"q{i % 3}.example.com", rcode="NXDomain", count=40))
        for i in range(30)
    ]
    lines.insert(7, '{"qname": "broken"')
    lines.insert(20, json.dumps(dns(NOW, client_ip="not-an-ip")))
    path = tmp_path / "dns.ndjson"
    path.write_text("\n".join(lines) + "\n")
    code = ctl(["ingest", "--server", server, "--dataset", "dns", str(path), "--chunk-bytes", "4000"])
    captured = capsys.readouterr()
    assert code == 1  # some lines were rejected
    assert captured.out.strip() == "30 dns records ingested, 2 lines rejected"
    assert "100.0%" in captured.err  # the progress bar reached the end
    assert "line 8: not JSON" in captured.err
    assert "line 21 field client_ip" in captured.err

    alert = tmp_path / "alert.yaml"
    alert.write_text(
        "apiVersion: projectcalico.org/v3\n"
        "kind: GlobalAlert\n"
        "metadata: {name: nxdomain}\n"
        "spec:\n"
        "  description: 'Observed ${sum} NXDomain responses for ${qname}'\n"
        "  severity: 100\n"
        "  dataSet: dns\n"
        "  query: rcode = NXDomain AND (qtype = A OR qtype = AAAA)\n"
        "  aggregateBy: [qname]\n"
        "  field: count\n"
        "  metric: sum\n"
        "  condition: gte\n"
        "  threshold: 400\n"
    )
    code = ctl(["test", "--server", server, "-f", str(alert), "--at", rfc3339(NOW), "-o", "json"])
    body = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(e["description"] for e in body["events"]) == [
        "Observed 400 NXDomain responses for q0.example.com",
        "Observed 400 NXDomain responses for q1.example.com",
        "Observed 400 NXDomain responses for q2.example.com",
    ]
    code = ctl(["test", "--server", server, "-f", str(alert), "--at", rfc3339(NOW)])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["TIME", "SEVERITY", "DESCRIPTION", "RECORD"]
    assert len(table) == 4
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(alert.read_text().replace("aggregateBy: [qname]", "aggregateBy: qname"))
    assert ctl(["test", "--server", server, "-f", str(wrong)]) == 1
    assert "spec.aggregateBy" in capsys.readouterr().err
