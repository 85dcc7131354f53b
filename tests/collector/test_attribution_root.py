"""Issue 12's rule shapes on a real kernel: a routed node namespace between two pod namespaces, drops in FORWARD.

Every shape's drops must come out under the policy label tests/collector/shapes.py gives it, with exactly the
packets sent and the bytes the dropping rule's own counter counts; a mark is named only from its own namespace.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from devstack.netns import Netns
from devstack.traffic import UDP_SENDER
from tests.collector.harness import RunningCollector
from tests.collector.shapes import (
    IPTABLES_LEGACY,
    IPTABLES_LEGACY_EXPECTED,
    IPTABLES_LEGACY_PORTS,
    IPTABLES_NFT,
    IPTABLES_NFT_EXPECTED,
    IPTABLES_NFT_PORTS,
    NFT_EXPECTED,
    NFT_PORTS,
    NFT_SHAPES,
)

pytestmark = pytest.mark.root

PY = sys.executable
UDP_V4_OVERHEAD, UDP_V6_OVERHEAD = 28, 48
Series = dict[tuple[str, str, str], float]


@dataclass(frozen=True)
class Routed:
    pod_a: str
    node: str
    pod_b: str
    src4: str
    dst4: str
    src6: str
    dst6: str


def routed(netns: Netns) -> Routed:
    """pod-a -- node -- pod-b, the node forwarding IPv4 and IPv6; random subnets (other tests drop packets too)."""
    a, b = secrets.randbelow(200) + 20, secrets.randbelow(250) + 1
    pod_a, node, pod_b = netns.add("poda"), netns.add("node"), netns.add("podb")
    net = Routed(
        pod_a, node, pod_b, f"10.{a}.{b}.2", f"10.{a + 1}.{b}.2", f"fd{a:02x}:{b:x}:1::2", f"fd{a:02x}:{b:x}:2::2"
    )
    netns.veth(
        pod_a,
        node,
        addrs_a=[f"{net.src4}/24", f"{net.src6}/64"],
        addrs_b=[f"10.{a}.{b}.1/24", f"fd{a:02x}:{b:x}:1::1/64"],
    )
    netns.veth(
        node,
        pod_b,
        addrs_a=[f"10.{a + 1}.{b}.1/24", f"fd{a:02x}:{b:x}:2::1/64"],
        addrs_b=[f"{net.dst4}/24", f"{net.dst6}/64"],
    )
    netns.run(node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    netns.run(pod_a, "ip", "route", "add", "default", "via", f"10.{a}.{b}.1")
    netns.run(pod_a, "ip", "-6", "route", "add", "default", "via", f"fd{a:02x}:{b:x}:1::1")
    netns.run(pod_b, "ip", "route", "add", "default", "via", f"10.{a + 1}.{b}.1")
    netns.run(pod_b, "ip", "-6", "route", "add", "default", "via", f"fd{a:02x}:{b:x}:2::1")
    return net


def send(netns: Netns, net: Routed, port: int, count: int, size: int, *, v6: bool = False) -> None:
    dst = net.dst6 if v6 else net.dst4
    netns.run(net.pod_a, PY, "-c", UDP_SENDER, dst, str(port), str(count), str(size))


def mine(series: Series, net: Routed) -> Series:
    return {k: v for k, v in series.items() if k[2] in (net.src4, net.src6)}


def run_shapes(
    netns: Netns,
    net: Routed,
    collector: RunningCollector,
    ports: dict[int, int],
    expected_names: dict[int, str],
    *,
    v6: bool = True,
) -> Series:
    """Send to every shape's port (IPv4, and IPv6 when ``v6``); wait for, and return, this test's series."""
    want: Series = {}
    families = [(False, net.src4, UDP_V4_OVERHEAD)] + ([(True, net.src6, UDP_V6_OVERHEAD)] if v6 else [])
    for n, (mark, port) in enumerate(sorted(ports.items())):
        for is_v6, src, overhead in families:
            count, size = 2 + n % 3, 40 + 10 * n
            send(netns, net, port, count, size, v6=is_v6)
            policy = expected_names[mark]
            for metric, value in (("calico_denied_packets", count), ("calico_denied_bytes", count * (size + overhead))):
                want[(metric, policy, src)] = want.get((metric, policy, src), 0) + value
    got = collector.wait_for(lambda s: mine(s, net) == want, timeout=15)
    assert mine(got, net) == want
    return want


def counter(netns: Netns, ns: str, comment: str) -> tuple[int, int]:
    for line in netns.run(ns, "nft", "list", "ruleset").splitlines():
        if f'comment "{comment}"' in line and "packets" in line:
            words = line.split()
            return int(words[words.index("packets") + 1]), int(words[words.index("bytes") + 1])
    raise AssertionError(f"no counted rule {comment}")


def test_nft_shapes_named_through_later_rules_jumps_gotos_and_vmaps(
    netns: Netns, start_collector: Callable[..., RunningCollector]
) -> None:
    net = routed(netns)
    netns.nft(net.node, NFT_SHAPES.format(src4=net.src4, src6=net.src6))
    collector = start_collector("--ruleset-refresh", "0.5")
    want = run_shapes(netns, net, collector, NFT_PORTS, NFT_EXPECTED)
    time.sleep(0.6)  # more drains: nothing counted twice
    assert mine(collector.series(), net) == want
    for policy in ("ns-a/later-rule", "ns-a/or", "ns-a/and-or", "ns-b/goto-deny"):
        packets = sum(v for (m, p, _), v in want.items() if p == policy and m == "calico_denied_packets")
        nbytes = sum(v for (m, p, _), v in want.items() if p == policy and m == "calico_denied_bytes")
        assert counter(netns, net.node, policy) == (packets, nbytes), policy


def test_iptables_nft_and_legacy_shapes(netns: Netns, start_collector: Callable[..., RunningCollector]) -> None:
    net = routed(netns)
    for command in ("iptables-nft", "ip6tables-nft"):
        for args in IPTABLES_NFT:
            netns.run(net.node, command, *args)
    for command in ("iptables-legacy", "ip6tables-legacy"):
        for args in IPTABLES_LEGACY:
            netns.run(net.node, command, *args)
    collector = start_collector("--ruleset-refresh", "0.5")
    ports = {**IPTABLES_NFT_PORTS, **IPTABLES_LEGACY_PORTS}
    run_shapes(netns, net, collector, ports, {**IPTABLES_NFT_EXPECTED, **IPTABLES_LEGACY_EXPECTED})


def test_a_mark_is_never_named_from_another_namespace(
    netns: Netns, start_collector: Callable[..., RunningCollector]
) -> None:
    """Node A sets a mesh's 0x539 and drops with no policy; namespace B names 0x539: A's drops keep the fallback."""
    net = routed(netns)
    netns.nft(
        net.node,
        """table inet mesh {
          chain forward { type filter hook forward priority 0;
            udp dport 7040 meta mark set 0x539
            udp dport 7040 counter drop
          }
        }""",
    )
    other = netns.add("other")
    netns.nft(
        other,
        """table inet pw { chain input { type filter hook input priority 0;
            meta mark 0x539 counter drop comment "ns-b/deny-mesh"
        }
        }""",
    )
    collector = start_collector("--ruleset-refresh", "0.5")
    send(netns, net, 7040, 3, 20)
    send(netns, net, 7040, 2, 20, v6=True)
    want = {
        ("calico_denied_packets", "mark/0x539", net.src4): 3,
        ("calico_denied_bytes", "mark/0x539", net.src4): 3 * 48,
        ("calico_denied_packets", "mark/0x539", net.src6): 2,
        ("calico_denied_bytes", "mark/0x539", net.src6): 2 * 68,
    }
    got = collector.wait_for(lambda s: mine(s, net) == want)
    assert mine(got, net) == want
    assert not any(k[1] == "ns-b/deny-mesh" for k in got)


TCP_ACK_SENDER = """
import socket, struct, sys
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(count):
    tcp = struct.pack("!HHIIBBHHH", 40000 + i, 7060, 1, 1, 5 << 4, 0x10, 1024, 0, 0)  # a lone ACK, no connection
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + tcp, (dst, 0))
"""


@pytest.mark.parametrize("export_unmarked", [False, True])
def test_drops_no_policy_made_go_to_the_health_counter(
    netns: Netns, start_collector: Callable[..., RunningCollector], export_unmarked: bool
) -> None:
    """conntrack INVALID, fib and a chain's policy drop: unattributed, not calico_denied_* (unless asked)."""
    net = routed(netns)
    netns.run(net.node, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0")
    netns.nft(
        net.node,
        """table inet plain {
          chain pre { type filter hook prerouting priority 0;
            udp dport 7061 fib daddr oif missing counter drop
          }
          chain forward { type filter hook forward priority 0; policy drop;
            ct state invalid counter drop
            udp dport != 7062 accept
          }
        }""",
    )
    collector = start_collector(*(["--export-unmarked"] if export_unmarked else []))
    netns.run(net.pod_a, PY, "-c", TCP_ACK_SENDER, net.src4, net.dst4, "4")  # conntrack INVALID
    send(netns, net, 7062, 3, 20)  # the forward chain's policy drop
    netns.run(net.pod_a, "ip", "route", "add", "10.254.1.0/24", "via", net.src4.rsplit(".", 1)[0] + ".1")
    netns.run(net.pod_a, PY, "-c", UDP_SENDER, "10.254.1.9", "7061", "2", "20")  # fib: no route on the node
    unattributed = "policywatch_collector_unattributed_drops_total"
    deadline = time.monotonic() + 10
    while collector.health(unattributed, namespace=net.node) != 9 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert collector.health(unattributed, namespace=net.node) == 9
    assert collector.health("policywatch_collector_unattributed_bytes_total", namespace=net.node) == 4 * 40 + 5 * 48
    exported = mine(collector.series(), net)
    if export_unmarked:
        assert exported == {
            ("calico_denied_packets", "unmarked", net.src4): 9,
            ("calico_denied_bytes", "unmarked", net.src4): 4 * 40 + 5 * 48,
        }
    else:
        assert exported == {}


# Sends COUNT Ethernet frames with an 802.1Q tag (VLAN 100) in the frame, carrying IPv4/UDP SRC -> DST:PORT,
# out of IFNAME with a packet socket: the skb's protocol is 802.1Q (the kernel here has no 8021q module).
VLAN_SENDER = """
import socket, struct, sys
ifname, mac, src, dst, port, count, size = sys.argv[1:8]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8100))
s.bind((ifname, 0x8100))
own = s.getsockname()[4]
payload = b"v" * int(size)
udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
frame = bytes.fromhex(mac.replace(":", "")) + own + struct.pack("!HHH", 0x8100, 100, 0x0800) + ip + udp
for _ in range(int(count)):
    try:
        s.send(frame)
    except OSError:  # ENOBUFS: the egress hook dropped it, as meant
        pass
"""


def test_netdev_egress_and_vlan_tagged_drops_count_the_rules_bytes(
    netns: Netns, start_collector: Callable[..., RunningCollector]
) -> None:
    """Bytes are skb->len as the dropping rule counts them: with the MAC header at netdev egress, and the
    source address read past an 802.1Q tag still in the frame."""
    a, b = secrets.randbelow(200) + 20, secrets.randbelow(250) + 1
    sender, receiver = netns.add("egress"), netns.add("egressrx")
    src, dst, vsrc = f"10.{a}.{b}.1", f"10.{a}.{b}.2", f"10.{a + 1}.{b}.1"
    if_s, if_r = netns.veth(sender, receiver, addrs_a=[f"{src}/24"], addrs_b=[f"{dst}/24"])
    mac = netns.run(receiver, "cat", f"/sys/class/net/{if_r}/address").strip()
    netns.run(sender, "ip", "neigh", "replace", dst, "lladdr", mac, "dev", if_s, "nud", "permanent")
    netns.nft(
        sender,
        f"""table netdev pwegress {{
          chain out {{ type filter hook egress device {if_s} priority 0;
            udp dport 7070 meta mark set 0x71 counter drop comment "egress/deny"
            vlan id 100 vlan type ip meta mark set 0x72 counter drop comment "egress/vlan"
          }}
        }}""",
    )
    collector = start_collector("--ruleset-refresh", "0.5")
    netns.run(sender, PY, "-c", UDP_SENDER, dst, "7070", "3", "50")
    netns.run(sender, PY, "-c", VLAN_SENDER, if_s, mac, vsrc, dst, "7071", "4", "30")
    packets, nbytes = counter(netns, sender, "egress/deny")
    vpackets, vbytes = counter(netns, sender, "egress/vlan")
    assert (packets, vpackets) == (3, 4)
    assert nbytes == 3 * (14 + 28 + 50) and vbytes == 4 * (18 + 28 + 30)  # the counters include the MAC header
    want = {
        ("calico_denied_packets", "egress/deny", src): packets,
        ("calico_denied_bytes", "egress/deny", src): nbytes,
        ("calico_denied_packets", "egress/vlan", vsrc): vpackets,
        ("calico_denied_bytes", "egress/vlan", vsrc): vbytes,
    }
    got = collector.wait_for(lambda s: {k: s.get(k) for k in want} == want)
    assert {k: got.get(k) for k in want} == want
