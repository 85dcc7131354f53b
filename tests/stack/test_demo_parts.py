"""The demo's small parts, without root: the bounded sender, the webhook receiver, the series filter, the samples."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from demo.samples import GLOBAL_ALERT
from demo.topology import DENIED_PORT, DENIED_SECONDS, Topology
from demo.traffic import main as traffic_main
from demo.traffic import send
from demo.walkthrough import is_demo_series
from devstack.services import WebhookReceiver
from evaluator.query import compile_query


def test_sender_sends_exactly_count_at_its_rate() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2)
        port = sink.getsockname()[1]
        start = time.monotonic()
        sent = send(src="127.0.0.1", dst="127.0.0.1", port=port, rate=50, count=10, seconds=5, payload=64)
        elapsed = time.monotonic() - start
        received = [sink.recv(2048) for _ in range(sent)]
    assert sent == 10
    assert 0.15 < elapsed < 1.5  # 10 datagrams at 50/s
    assert all(len(data) == 64 for data in received)


def test_sender_stops_at_its_time_limit() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sent = send(
            src="127.0.0.1", dst="127.0.0.1", port=sink.getsockname()[1], rate=20, count=10**6, seconds=0.5, payload=16
        )
    assert 5 <= sent <= 15


def test_sender_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        traffic_main(["--src", "127.0.0.1", "--dst", "127.0.0.1", "--port", "9", "--rate", "0"])
    assert exc.value.code == 2
    assert "--rate, --count and --seconds must be positive" in capsys.readouterr().err


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_webhook_keeps_alertmanager_notifications_and_refuses_garbage() -> None:
    receiver = WebhookReceiver().start()
    try:
        doc = {"version": "4", "status": "firing", "alerts": [{"labels": {"alertname": "X"}, "status": "firing"}]}
        assert _post(receiver.url, json.dumps(doc).encode()) == 200
        assert _post(receiver.url, b"{not json") == 400
        assert _post(receiver.url, b"[1, 2]") == 200  # valid JSON, but no notification: ignored
        assert receiver.alerts() == doc["alerts"]
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("line", "mine"),
    [
        ('calico_denied_packets{policy="demo-db/deny-frontend-to-postgres",srcIP="10.77.0.1"} 3', True),
        # Only with --export-unmarked, which the demo does not pass: drops no policy made are not the demo's series.
        ('calico_denied_bytes{policy="unmarked",srcIP="10.77.0.11"} 92', False),
        ('calico_denied_bytes{policy="unmarked",srcIP="10.3.129.1"} 92', False),
        ('calico_denied_packets{policy="other/deny",srcIP="10.77.0.1"} 3', False),
    ],
)
def test_demo_series_filter(line: str, mine: bool) -> None:
    assert is_demo_series(line) is mine


def test_demo_alert_sums_the_packets_of_the_fixed_count_senders() -> None:
    spec = GLOBAL_ALERT["spec"]
    assert compile_query(spec["query"], spec["dataSet"]) is not None
    assert spec["query"] == f"action=deny AND dest_port={DENIED_PORT}"
    assert (spec["field"], spec["metric"]) == ("packets_in", "sum")  # the db side reports the drops: packets_in
    topology = Topology()  # not built: flows() only names the streams
    to_port = [f for f in topology.flows() if f.port == DENIED_PORT]
    assert to_port and all(f.count == round(f.rate * DENIED_SECONDS) for f in to_port)
    assert all(f.count is None for f in topology.flows() if f.port != DENIED_PORT)
    assert topology.packets_sent_to(DENIED_PORT) == {"10.77.0.2": (25 + 3 + 2) * DENIED_SECONDS, "fd77::2": 360}
