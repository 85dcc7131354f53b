"""The shared fixtures start and stop real servers and namespaces, and what they start really works."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from sqlalchemy import create_engine, text

from devstack.netns import Netns
from devstack.procs import descendants, running
from devstack.services import (
    AlertmanagerServer,
    PostgresServer,
    PrometheusServer,
    WebhookReceiver,
    free_port,
    http_get,
    wait_until,
)


@pytest.mark.postgres
def test_postgres_is_real_and_databases_are_fresh(postgres_server: PostgresServer, pg_database: str) -> None:
    engine = create_engine(pg_database)
    with engine.begin() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
        tables = conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"))
        assert tables.scalar_one() == 0
        conn.execute(text("CREATE TABLE probe (id serial PRIMARY KEY, note text NOT NULL)"))
        conn.execute(text("INSERT INTO probe (note) VALUES ('a'), ('b')"))
        assert conn.execute(text("SELECT string_agg(note, ',' ORDER BY id) FROM probe")).scalar_one() == "a,b"
    engine.dispose()
    assert str(version).split(".")[0].isdigit()
    # It listens on loopback only.
    with socket.create_connection(("127.0.0.1", postgres_server.port), timeout=2):
        pass


@pytest.mark.postgres
def test_postgres_stop_removes_its_data() -> None:
    server = PostgresServer().start()
    workdir = server.workdir
    assert (workdir / "data" / "PG_VERSION").exists()
    server.stop()
    assert not workdir.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


@pytest.mark.prometheus
def test_prometheus_scrapes_an_exporter(prometheus: Callable[..., PrometheusServer]) -> None:
    registry = CollectorRegistry()
    Gauge("harness_probe_value", "A value the test sets.", ["kind"], registry=registry).labels(kind="x").set(42)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prom = prometheus(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "probe", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
            }
        )
        result = wait_until(lambda: prom.query('harness_probe_value{kind="x"}'), timeout=30, what="a scraped sample")
        assert float(result[0]["value"][1]) == 42.0
        assert result[0]["metric"]["job"] == "probe"
        assert set(prom.targets_up().values()) == {"up"}
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.mark.prometheus
def test_alertmanager_routes_an_alert_to_a_webhook(
    alertmanager: Callable[..., AlertmanagerServer], webhook: WebhookReceiver
) -> None:
    am = alertmanager(
        {
            "route": {"receiver": "hook", "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook.url}]}],
        }
    )
    alert = [{"labels": {"alertname": "HarnessProbe", "severity": "info"}, "annotations": {"summary": "probe"}}]
    import urllib.request

    req = urllib.request.Request(
        f"{am.url}/api/v2/alerts",
        data=json.dumps(alert).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    assert [a["labels"]["alertname"] for a in am.alerts()] == ["HarnessProbe"]
    body = wait_until(lambda: webhook.notifications, timeout=30, what="the webhook notification")[0]
    assert body["status"] == "firing"
    assert body["alerts"][0]["labels"] == {"alertname": "HarnessProbe", "severity": "info"}


@pytest.mark.root
def test_packets_cross_a_veth_and_nft_counts_them(netns: Netns) -> None:
    sender = netns.add("sender")
    receiver = netns.add("receiver")
    netns.veth(
        sender, receiver, addrs_a=["10.201.0.1/24", "fd00:201::1/64"], addrs_b=["10.201.0.2/24", "fd00:201::2/64"]
    )
    netns.nft(
        receiver,
        """
        table inet harness {
          chain input {
            type filter hook input priority 0; policy accept;
            udp dport 9999 counter name probe_hits drop
          }
          counter probe_hits { }
        }
        """,
    )
    netns.run(
        sender,
        "/usr/bin/python3",
        "-c",
        "import socket\n"
        "for fam, dst in ((socket.AF_INET, '10.201.0.2'), (socket.AF_INET6, 'fd00:201::2')):\n"
        "    s = socket.socket(fam, socket.SOCK_DGRAM)\n"
        "    for _ in range(5): s.sendto(b'x' * 10, (dst, 9999))\n",
    )

    def counted() -> int:
        doc = json.loads(netns.run(receiver, "nft", "-j", "list", "counter", "inet", "harness", "probe_hits"))
        counter = next(item["counter"] for item in doc["nftables"] if "counter" in item)
        return int(counter["packets"])

    assert wait_until(lambda: counted() == 10, timeout=5, what="10 packets counted") is True
    # 5 x (20 IPv4 + 8 UDP + 10) + 5 x (40 IPv6 + 8 UDP + 10): nft counts the network-layer length.
    doc = json.loads(netns.run(receiver, "nft", "-j", "list", "counter", "inet", "harness", "probe_hits"))
    counter = next(item["counter"] for item in doc["nftables"] if "counter" in item)
    assert counter["bytes"] == 5 * 38 + 5 * 58


@pytest.mark.root
def test_netns_cleans_up_even_when_the_test_body_fails() -> None:
    made = Netns()
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"):
        try:
            names.append(made.add("doomed"))
            made.veth(None, names[0], addrs_a=["10.202.0.1/30"], addrs_b=["10.202.0.2/30"])
            made.nft(None, f"table ip pwt_{made.tag} {{ }}")
            made.popen(names[0], "sleep", "60")
            raise RuntimeError("boom")
        finally:
            made.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert names[0] not in listed
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"pw{made.tag}" not in links
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert f"pwt_{made.tag}" not in tables


def test_http_get_reports_status_codes_without_raising() -> None:
    port = free_port()
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{port}/", timeout=1)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="never"):
        wait_until(lambda: False, timeout=0.3, what="never")
    assert time.monotonic() - started < 5


PARENT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from devstack.services import ManagedProcess, PostgresServer
if {postgres!r}:
    server = PostgresServer(workdir=Path({workdir!r})).start()
    pid = server.process.proc.pid
else:
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    pid = ManagedProcess(sleeper, log_path=Path({workdir!r}) / "log").proc.pid
print(pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("postgres", [False, pytest.param(True, marks=pytest.mark.postgres)], ids=["child", "postgres"])
def test_services_die_with_a_killed_parent(postgres: bool) -> None:
    """A demo or test run killed with SIGKILL leaves none of its services running, although each runs in a
    session of its own: they get SIGTERM when the process that started them dies."""
    workdir = Path(tempfile.mkdtemp(prefix="pwt-pdeath-"))  # (below /tmp: PostgreSQL's user reaches it)
    script = PARENT.format(root=str(Path(__file__).resolve().parents[1]), postgres=postgres, workdir=str(workdir))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    service: set[int] = set()
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent did not start its service: {line!r}"
        service = descendants(int(line))
        assert running(service), "the service is not running"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(lambda: not running(service), timeout=30, what=f"the service {sorted(service)} to exit")
    finally:
        parent.kill()
        parent.wait(timeout=10)
        for pid in running(service):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
