"""Denied-flow records end to end, as root: real kernel, BPF, nftables and veths, a real collector shipping to a
real ``policywatch-evaluator``, read back from its store and through its dry-run API."""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from api.db import make_engine
from devstack.netns import Netns
from devstack.services import free_port
from devstack.traffic import ICMP_SENDER, SPOOF_SENDER, TCP_SYN_SENDER, UDP_SENDER
from tests.api.support import EvaluatorProcess, alert
from tests.collector.harness import UDP_V4_OVERHEAD, UDP_V6_OVERHEAD, RunningCollector, nft_counter, send, tagged_drop

pytestmark = pytest.mark.root

PY = sys.executable
_NET = secrets.randbelow(250) + 1, secrets.randbelow(250) + 1
V4_SRC, V4_DST = f"10.{_NET[0]}.{_NET[1]}.1", f"10.{_NET[0]}.{_NET[1]}.2"
V6_SRC, V6_DST = f"fd7f:{_NET[0]:x}:{_NET[1]:x}::1", f"fd7f:{_NET[0]:x}:{_NET[1]:x}::2"


def stored_flows(tmp_path: Path, tag: str) -> list[dict[str, Any]]:
    """The flow records of this test in the evaluator's store."""
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT record FROM logstore_flows")).scalars().all()
    finally:
        engine.dispose()
    records = [json.loads(r) if isinstance(r, str) else r for r in rows]
    return [r for r in records if any(tag in p for p in r["policies"]["all_policies"])]


def totals(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[int, int]]:
    """{(policy, proto, source, source port, dest, dest port, icmp type): (packets, bytes)} summed over intervals."""
    out: dict[tuple[Any, ...], tuple[int, int]] = {}
    for r in records:
        policy = r["policies"]["all_policies"][0].split("|")[2]
        key = (policy, r["proto"], r["source_ip"], r["source_port"], r["dest_ip"], r["dest_port"], r.get("icmp_type"))
        p, b = out.get(key, (0, 0))
        out[key] = (p + r["packets_in"], b + r["bytes_in"])
    return out


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_denied_flows_reach_the_evaluator_exactly_once_and_fire_a_globalalert(
    tmp_path: Path, netns: Netns, evaluator: EvaluatorProcess, start_collector: Callable[..., RunningCollector]
) -> None:
    tag = secrets.token_hex(3)
    pol = {name: f"flows-{name}-{tag}" for name in ("tcp4", "tcp6", "udp4", "udp6", "icmp4", "icmp6")}
    sender, receiver = netns.add("fsend"), netns.add("frecv")
    netns.veth(sender, receiver, addrs_a=[f"{V4_SRC}/24", f"{V6_SRC}/64"], addrs_b=[f"{V4_DST}/24", f"{V6_DST}/64"])
    netns.nft(
        receiver,
        f"""
        table inet pwflows {{
          chain input {{ type filter hook input priority 0; policy accept;
            meta nfproto ipv4 tcp dport 5432 meta mark set 0x141 counter drop comment "{pol["tcp4"]}"
            meta nfproto ipv6 tcp dport 5432 meta mark set 0x142 counter drop comment "{pol["tcp6"]}"
            meta nfproto ipv4 udp dport 7101 meta mark set 0x143 counter drop comment "{pol["udp4"]}"
            meta nfproto ipv6 udp dport 7101 meta mark set 0x144 counter drop comment "{pol["udp6"]}"
            icmp type echo-request meta mark set 0x145 counter drop comment "{pol["icmp4"]}"
            icmpv6 type echo-request meta mark set 0x146 counter drop comment "{pol["icmp6"]}"
          }}
        }}
        """,
    )
    port = free_port()
    url = evaluator.start("--no-scheduler", port=port)
    collector = start_collector("--flow-logs", "--flow-logs-url", url, "--flow-logs-flush-interval", "1")

    syn4 = netns.run(sender, PY, "-c", TCP_SYN_SENDER, V4_DST, "5432", "3", "0.3").split()
    syn6 = netns.run(sender, PY, "-c", TCP_SYN_SENDER, V6_DST, "5432", "2", "0.3").split()
    netns.run(sender, PY, "-c", UDP_SENDER, V4_DST, "7101", "5", "100")
    netns.run(sender, PY, "-c", UDP_SENDER, V6_DST, "7101", "4", "60")
    netns.run(sender, PY, "-c", ICMP_SENDER, V4_DST, "3", "16")
    netns.run(sender, PY, "-c", ICMP_SENDER, V6_DST, "2", "24")
    counters = {name: nft_counter(netns, receiver, policy) for name, policy in pol.items()}
    assert counters["tcp4"][0] == 3 and counters["tcp6"][0] == 2  # one SYN per attempt
    assert counters["udp4"] == (5, 5 * 128) and counters["icmp6"] == (2, 2 * (40 + 8 + 24))

    def delivered() -> dict[tuple[Any, ...], tuple[int, int]]:
        return totals(stored_flows(tmp_path, tag))

    wait_until(lambda: sum(p for p, _ in delivered().values()) == 19, 15, f"flows not delivered: {delivered()}")
    got = delivered()
    # every flow on its own, and per rule the exact packets and bytes of its counter
    for name, policy in pol.items():
        flows = {k: v for k, v in got.items() if k[0] == policy}
        assert (sum(p for p, _ in flows.values()), sum(b for _, b in flows.values())) == counters[name], flows
    tcp = {k[3] for k in got if k[1] == "tcp"}
    assert tcp == {int(p) for p in syn4 + syn6}
    assert all(v[0] == 1 for k, v in got.items() if k[1] == "tcp")  # one flow per source port
    udp4 = [k for k in got if k[0] == pol["udp4"]]
    assert len(udp4) == 1 and udp4[0][2:6:2] == (V4_SRC, V4_DST) and udp4[0][5] == 7101
    assert {k[6] for k in got if k[1] in ("icmp", "icmp6")} == {8, 128}
    assert {k[5] for k in got if k[1] in ("icmp", "icmp6")} == {None}
    record = stored_flows(tmp_path, tag)[0]
    assert record["action"] == "deny" and record["reporter"] == "dst" and record["source_type"] == "net"
    assert record["end_time"] >= record["start_time"] and record["host"]

    # the evaluator away for a while: the records of that time arrive once it is back, once
    evaluator.stop()
    netns.run(sender, PY, "-c", UDP_SENDER, V4_DST, "7101", "6", "100")
    time.sleep(2.5)  # two flush intervals: the shipper fails and backs off
    assert (collector.health("policywatch_collector_flow_ship_failures_total") or 0) >= 1
    evaluator.start("--no-scheduler", port=port)

    def udp4_total() -> tuple[int, int]:
        flows = [v for k, v in delivered().items() if k[0] == pol["udp4"]]
        return sum(p for p, _ in flows), sum(b for _, b in flows)

    wait_until(lambda: udp4_total()[0] >= 11, 30, f"not delivered after restart: {delivered()}")
    time.sleep(1.5)  # more flushes and retries: nothing stored twice
    assert udp4_total() == (11, 11 * 128) == nft_counter(netns, receiver, pol["udp4"])
    assert delivered()[udp4[0]] == (5, 5 * 128)  # the first sender's flow; the second one had its own port
    assert len(stored_flows(tmp_path, tag)) == len({json.dumps(r, sort_keys=True) for r in stored_flows(tmp_path, tag)})
    assert (collector.health("policywatch_collector_flow_records_shipped_total") or 0) >= len(got)

    # a GlobalAlert over the denied flows to 5432 fires with the exact sum of the SYNs sent
    spec = alert(
        f"pg-deny-{tag}",
        # only this test's flows: the collector sees every drop on the machine
        query=f'action = deny AND dest_port = 5432 AND (dest_ip = "{V4_DST}" OR dest_ip = "{V6_DST}")',
        aggregateBy=["proto"],
        field="packets_in",
        metric="sum",
        condition="gt",
        threshold=0,
        description="denied to postgres: ${sum}",
    )
    response = httpx.post(f"{url}/globalalerts/test", json=spec, timeout=30)
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    sent = counters["tcp4"][0] + counters["tcp6"][0]
    assert [e["record"]["sum"] for e in events] == [sent], events
    assert events[0]["description"] == f"denied to postgres: {sent}"


def test_flow_map_overflow_under_a_spoofed_flood_accounts_every_packet(
    tmp_path: Path, netns: Netns, evaluator: EvaluatorProcess, start_collector: Callable[..., RunningCollector]
) -> None:
    tag = secrets.token_hex(3)
    policy = f"flowflood-{tag}"
    sender, receiver = netns.add("fsend"), netns.add("frecv")
    netns.veth(sender, receiver, addrs_a=[f"{V4_SRC}/24"], addrs_b=[f"{V4_DST}/24"])
    # prerouting: spoofed sources are dropped before reverse-path filtering could discard them
    tagged_drop(netns, receiver, port=7009, mark=0x98, policy=policy, family="ip", hook="prerouting")
    url = evaluator.start("--no-scheduler")
    collector = start_collector(
        "--flow-logs", "--flow-logs-url", url, "--flow-logs-flush-interval", "1", "--flow-map-size", "16",
        "--drain-interval", "2",
    )  # fmt: skip
    sources, repeat = 300, 2
    netns.run(sender, PY, "-c", SPOOF_SENDER, V4_DST, "7009", f"10.{_NET[0]}.200.1", str(sources), str(repeat))
    sent = sources * repeat
    assert nft_counter(netns, receiver, policy)[0] == sent

    def delivered() -> dict[tuple[Any, ...], tuple[int, int]]:
        return totals(stored_flows(tmp_path, tag))

    wait_until(lambda: sum(p for p, _ in delivered().values()) >= sent, 20, f"not all delivered: {delivered()}")
    got = delivered()
    assert sum(p for p, _ in got.values()) == sent
    assert sum(b for _, b in got.values()) == sent * 46 == nft_counter(netns, receiver, policy)[1]
    overflow = [k for k in got if k[2] is None]
    assert len(overflow) == 1 and got[overflow[0]][0] > 0  # the per-policy overflow record: no address, no port
    per_flow = [k for k in got if k[2] is not None]
    assert 0 < len(per_flow) < sources
    assert (collector.health("policywatch_collector_flow_overflow_packets_total") or 0) >= got[overflow[0]][0]


def test_drop_series_stay_exact_per_source_with_flow_logs(
    netns: Netns, evaluator: EvaluatorProcess, start_collector: Callable[..., RunningCollector]
) -> None:
    """With --flow-logs the program reads each packet once for both keys and, when a packet's flow is the one its
    CPU cached, adds the drop to the cached drop key without comparing it: runs of one flow, a new flow from the
    same source, another source, spoofed sources and drains in between all keep every source's series exact."""
    tag = secrets.token_hex(3)
    policy = f"flowkeys-{tag}"
    sender, receiver = netns.add("ksend"), netns.add("krecv")
    netns.veth(sender, receiver, addrs_a=[f"{V4_SRC}/24", f"{V6_SRC}/64"], addrs_b=[f"{V4_DST}/24", f"{V6_DST}/64"])
    tagged_drop(netns, receiver, port=7011, mark=0x99, policy=policy, family="ip", hook="prerouting")
    tagged_drop(netns, receiver, port=7011, mark=0x9A, policy=f"{policy}-6", family="ip6", hook="prerouting")
    url = evaluator.start("--no-scheduler")
    collector = start_collector(
        "--flow-logs", "--flow-logs-url", url, "--flow-logs-flush-interval", "1", "--drain-interval", "0.5"
    )
    sent: dict[str, tuple[int, int]] = {}

    def udp(dst: str, src: str, count: int, size: int, overhead: int) -> None:
        send(netns, sender, dst, 7011, count, size)  # one socket: one source port, one flow
        p, b = sent.get(src, (0, 0))
        sent[src] = (p + count, b + count * (size + overhead))

    udp(V4_DST, V4_SRC, 40, 100, UDP_V4_OVERHEAD)
    udp(V4_DST, V4_SRC, 10, 50, UDP_V4_OVERHEAD)  # another flow, the same drop key
    udp(V6_DST, V6_SRC, 7, 80, UDP_V6_OVERHEAD)
    time.sleep(1.2)  # drains: the caches change generation
    udp(V4_DST, V4_SRC, 5, 30, UDP_V4_OVERHEAD)
    spoof_base = f"10.{_NET[0]}.251.1"  # _NET[1] <= 250: never V4_SRC's subnet
    netns.run(sender, PY, "-c", SPOOF_SENDER, V4_DST, "7011", spoof_base, "30", "2")  # 30 sources, twice each
    udp(V4_DST, V4_SRC, 20, 64, UDP_V4_OVERHEAD)
    total = (sum(p for p, _ in sent.values()) + 60, sum(b for _, b in sent.values()) + 60 * 46)

    def dropped() -> int:
        return nft_counter(netns, receiver, policy)[0] + nft_counter(netns, receiver, f"{policy}-6")[0]

    wait_until(lambda: dropped() >= total[0], 10, "the rules did not drop what was sent")  # a loaded machine's backlog
    assert dropped() == total[0]

    def mine(series: dict[tuple[str, str, str], float]) -> dict[tuple[str, str], float]:
        return {(m, src): v for (m, p, src), v in series.items() if p.startswith(policy)}

    got = mine(
        collector.wait_for(
            lambda s: sum(v for (m, _), v in mine(s).items() if m.endswith("packets")) >= total[0], timeout=30
        )
    )
    for src, (packets, nbytes) in sent.items():
        assert got[("calico_denied_packets", src)] == packets and got[("calico_denied_bytes", src)] == nbytes, got
    spoofed = {src: v for (m, src), v in got.items() if m == "calico_denied_packets" and src not in sent}
    assert len(spoofed) == 30 and set(spoofed.values()) == {2}, spoofed
    assert sum(v for (m, _), v in got.items() if m == "calico_denied_bytes") == total[1]
    assert nft_counter(netns, receiver, policy)[1] + nft_counter(netns, receiver, f"{policy}-6")[1] == total[1]
