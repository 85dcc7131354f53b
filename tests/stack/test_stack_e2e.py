"""The whole chain, asserted: the demo's walkthrough (demo/walkthrough.py) on real namespaces, nft, the BPF
collector, Prometheus with the chart's rules, Alertmanager, and the evaluator with flow logs and a GlobalAlert.
Then every dashboard panel's PromQL against that Prometheus, and the clean-up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from demo.assets import REPO_ROOT, RULES_FILE
from demo.samples import ALERT_NAME
from demo.stack import BPF_STATS, DemoStack
from demo.topology import DENIED_PORT, DENIED_SECONDS, FRONTEND_IPS, POLICY_DB, POLICY_FRONTEND
from demo.walkthrough import EXPECTED_ALERTS, Walkthrough
from devstack.services import http_get

pytestmark = [pytest.mark.root, pytest.mark.prometheus]

SAMPLE = re.compile(r'^(calico_denied_(?:packets|bytes))\{policy="([^"]+)",srcIP="([^"]+)"\} (\S+)$')


@pytest.fixture(scope="module")
def walk() -> Iterator[Walkthrough]:
    said: list[str] = []
    stack = DemoStack(say=said.append, traffic_seconds=600)
    walkthrough = Walkthrough(stack, alert_timeout=240)
    walkthrough.bpf_stats_before = BPF_STATS.read_text()  # type: ignore[attr-defined]
    try:
        walkthrough.run()
        yield walkthrough
    finally:
        stack.close()


def samples(lines: list[str]) -> dict[tuple[str, str, str], float]:
    out = {}
    for line in lines:
        match = SAMPLE.match(line)
        assert match, f"not a denied-metric sample: {line!r}"
        out[(match[1], match[2], match[3])] = float(match[4])
    return out


def test_collector_exports_the_demo_series(walk: Walkthrough) -> None:
    found = samples(walk.metric_lines)
    for src in FRONTEND_IPS:
        assert found[("calico_denied_packets", POLICY_DB, src)] >= 1
    assert found[("calico_denied_packets", POLICY_FRONTEND, "10.77.0.2")] >= 1
    assert found[("calico_denied_packets", "mark/0x1d3", "10.77.0.12")] >= 1
    # The unmarked drop in db is no policy's: absent from calico_denied_*, counted in the collector's health counter.
    assert not [line for line in walk.stack.denied_lines() if 'policy="unmarked"' in line]
    assert walk.unattributed >= 1
    assert walk.stack.unattributed_drops()[walk.stack.topology.db] >= walk.unattributed
    # Bytes are the IP packet's length: 64 B payload + 8 B UDP + 20 B IPv4 (or 40 B IPv6) per packet.
    for (name, policy, src), packets in found.items():
        if name == "calico_denied_packets":
            per_packet = 112 if ":" in src else 92
            assert found[("calico_denied_bytes", policy, src)] == packets * per_packet


def test_metrics_endpoint_has_the_spec_help_texts(walk: Walkthrough) -> None:
    status, body = http_get(f"{walk.stack.collector_url}/metrics")
    text = body.decode()
    assert status == 200
    assert "# HELP calico_denied_packets Total number of packets denied by calico policies." in text
    assert "# TYPE calico_denied_bytes gauge" in text


def test_prometheus_fires_the_rules_on_the_denied_traffic(walk: Walkthrough) -> None:
    assert set(walk.firing) == set(EXPECTED_ALERTS)
    rate = walk.firing[("CalicoDeniedSourceRateHigh", POLICY_DB, "10.77.0.1")]
    assert rate["labels"]["severity"] == "warning"
    # The sender's 25 packets/s. It keeps its average by catching up after a stall of a busy machine, so one
    # 1-minute window can see up to about twice that; the rule's threshold is 5/s.
    assert 15 < float(rate["value"]) < 60


def test_prometheus_loaded_every_rule_healthy(walk: Walkthrough) -> None:
    prometheus = walk.stack.prometheus
    assert prometheus is not None
    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    expected = yaml.safe_load(RULES_FILE.read_text())
    assert len(rules) == sum(len(group["rules"]) for group in expected["groups"])
    assert {rule["name"]: rule["health"] for rule in rules if rule["health"] != "ok"} == {}


def test_alertmanager_receives_and_delivers(walk: Walkthrough) -> None:
    am = walk.stack.alertmanager
    assert am is not None
    names = {a["labels"]["alertname"] for a in am.alerts() if a["labels"].get("policy") == POLICY_DB}
    assert {"CalicoDeniedNewSource", "CalicoDeniedSourceRateHigh"} <= names
    delivered = {a["labels"]["alertname"] for a in walk.delivered}
    assert "CalicoDeniedNewSource" in delivered
    assert all(a["status"] in {"firing", "resolved"} for a in walk.delivered)


def demo_rule_counters(walk: Walkthrough) -> dict[str, int]:
    """The packets counter of the db's two POLICY_DB rules (IPv4, IPv6), keyed by the address family's dest."""
    out = {}
    for line in walk.stack.topology.netns.run(walk.stack.topology.db, "nft", "list", "ruleset").splitlines():
        if f'comment "{POLICY_DB}"' in line:
            words = line.split()
            out["fd77::2" if words[0] == "ip6" else "10.77.0.2"] = int(words[words.index("packets") + 1])
    return out


def latest_sums(walk: Walkthrough) -> dict[str, float]:
    """The largest GlobalAlert sum per dest_ip (the lookback holds all the traffic, so sums only grow)."""
    sums: dict[str, float] = {}
    for event in walk.stack.events():
        dest = event["record"]["dest_ip"]
        sums[dest] = max(sums.get(dest, 0.0), float(event["record"]["sum"]))
    return sums


def test_globalalert_fires_on_the_collectors_flow_records(walk: Walkthrough) -> None:
    # No hand-made samples: the events come from the records the collector shipped for the drops it saw.
    assert walk.events
    event = walk.events[0]
    assert event["type"] == "global_alert"
    assert event["alert"] == ALERT_NAME
    assert event["severity"] == 100
    assert event["record"]["dest_ip"] in {"10.77.0.2", "fd77::2"}
    dest = event["record"]["dest_ip"]
    assert re.fullmatch(rf"[0-9]+(\.0)? packets to {re.escape(dest)} port 5432 denied", event["description"])


def test_globalalert_sum_equals_the_packets_sent_and_the_rule_counter(walk: Walkthrough) -> None:
    # The senders to 5432 send a fixed count over DENIED_SECONDS; the walkthrough creates the GlobalAlert once they
    # are done and flushed, so its events' sum per destination is every packet they sent: what the nft rule counted.
    sent = walk.stack.topology.packets_sent_to(DENIED_PORT)
    assert sum(sent.values()) == 32 * DENIED_SECONDS
    assert {e["record"]["dest_ip"]: e["record"]["sum"] for e in walk.events} == sent
    assert latest_sums(walk) == sent
    assert demo_rule_counters(walk) == sent


def test_globalalert_instances_reach_alertmanager(walk: Walkthrough) -> None:
    # One Alertmanager alert per firing instance, labelled with the alert, its severity and its aggregation field.
    by_dest = {a["labels"].get("dest_ip"): a for a in walk.notified}
    assert set(by_dest) <= {"10.77.0.2", "fd77::2"} and "10.77.0.2" in by_dest
    v4 = by_dest["10.77.0.2"]
    assert v4["labels"]["alertname"] == ALERT_NAME
    assert v4["labels"]["severity"] == "100"
    assert "packets to 10.77.0.2 port 5432 denied" in " ".join(v4["annotations"].values())


def test_prometheus_scrapes_the_evaluator(walk: Walkthrough) -> None:
    prometheus = walk.stack.prometheus
    assert prometheus is not None
    deadline = time.monotonic() + 60
    while True:
        result = prometheus.query(f'policywatch_evaluator_events_total{{alert="{ALERT_NAME}"}}')
        if result or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert result and sum(float(r["value"][1]) for r in result) >= 1


def test_every_dashboard_panel_returns_data(walk: Walkthrough) -> None:
    # Again, now that the evaluator has been scraped a few times; rate() panels need two scrapes of a series.
    deadline = time.monotonic() + 60
    walk.dashboards()
    while walk.panels_without_data and time.monotonic() < deadline:
        time.sleep(5)
        walk.dashboards()
    assert [q.label for q in walk.panels_without_data] == []
    assert len(walk.panels_with_data) >= 30


def test_close_removes_everything(walk: Walkthrough) -> None:
    stack = walk.stack
    namespaces = list(stack.topology.netns.namespaces)
    processes = [p for p in (stack.collector, stack.evaluator) if p is not None]
    prometheus = stack.prometheus
    assert namespaces and prometheus is not None and prometheus.process is not None
    prometheus_proc = prometheus.process.proc
    stack.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(ns in listed for ns in namespaces)
    assert all(p.proc.poll() is not None for p in processes)
    assert prometheus_proc.poll() is not None
    assert not stack.workdir.exists()
    assert BPF_STATS.read_text() == walk.bpf_stats_before  # type: ignore[attr-defined]


def test_demo_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    """scripts/demo's program, interrupted while running: it removes what it made and exits."""
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo", "--duration", "0"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 120
            while "[3/7]" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            assert "[3/7]" in log.read_text(), log.read_text()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:  # the test failed: SIGTERM still has the demo remove what it made
                proc.terminate()
                try:
                    proc.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    text = log.read_text()
    assert "Interrupted." in text and "Cleaning up" in text and "done." in text
    namespaces = re.findall(r"(pwt-(?:frontend|db)-[0-9a-f]+)", text)
    assert namespaces
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(ns in listed for ns in namespaces)


def test_demo_refuses_bad_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--duration", "-5"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "--duration must be >= 0" in result.stderr
