"""Two namespaces joined by a veth, each with tagged deny rules, and the traffic they deny.

frontend (10.77.0.1, .11, .12, fd77::1)  <--veth-->  db (10.77.0.2, fd77::2)

- db drops UDP 5432 from the frontend, tagged:  meta mark set 0x1d1 ... drop comment "demo-db/deny-frontend-to-postgres"
- frontend drops UDP 53 from db, tagged:        meta mark set 0x1d2 ... drop comment "demo-frontend/deny-dns-from-db"
- db also drops UDP 9 with no mark: no policy made that drop, so the collector counts it in
  policywatch_collector_unattributed_drops_total{namespace=db} on /collector/metrics, not as calico_denied_*;
  UDP 10 is marked by a rule with no comment: exported under the fallback label policy="mark/0x1d3".
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from demo.assets import REPO_ROOT
from devstack.netns import Netns

POLICY_DB = "demo-db/deny-frontend-to-postgres"
POLICY_FRONTEND = "demo-frontend/deny-dns-from-db"
MARK_DB = 0x1D1  # ids unlikely to clash with other rules on the host: the collector reads them all
MARK_FRONTEND = 0x1D2
MARK_UNNAMED = 0x1D3  # set and dropped by a rule with no comment: exported under the fallback label mark/0x1d3
FRONTEND_IPS = ("10.77.0.1", "10.77.0.11", "10.77.0.12", "fd77::1")
DB_IPS = ("10.77.0.2", "fd77::2")
TABLE = "policywatch_demo"
DENIED_PORT = 5432  # the GlobalAlert's dest_port
DENIED_SECONDS = 180  # the senders to DENIED_PORT send a fixed count: this long at their rate


@dataclass(frozen=True)
class Flow:
    """One stream of denied datagrams."""

    ns: str
    src: str
    dst: str
    port: int
    rate: float
    policy: str
    count: int | None = None  # a fixed number of datagrams (known totals to check against); None: until stopped


def _ruleset(rules: str) -> str:
    return (
        f"table inet {TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"{rules}"
        "  }\n"
        "}\n"
    )


class Topology:
    """Builds the namespaces through the test suite's ``Netns`` (which removes everything in ``close()``)."""

    def __init__(self, netns: Netns | None = None) -> None:
        self.netns = netns or Netns()
        self.frontend = ""
        self.db = ""
        self.fixed_senders: list[subprocess.Popen[bytes]] = []  # the fixed-count ones: their total is known

    def build(self) -> Topology:
        self.frontend = self.netns.add("frontend")
        self.db = self.netns.add("db")
        self.netns.veth(
            self.frontend,
            self.db,
            addrs_a=[f"{ip}/{64 if ':' in ip else 24}" for ip in FRONTEND_IPS],
            addrs_b=[f"{ip}/{64 if ':' in ip else 24}" for ip in DB_IPS],
        )
        self.netns.nft(
            self.db,
            _ruleset(
                f"    ip saddr 10.77.0.0/24 udp dport 5432 meta mark set {MARK_DB:#x} counter drop "
                f'comment "{POLICY_DB}"\n'
                f"    ip6 saddr fd77::/64 udp dport 5432 meta mark set {MARK_DB:#x} counter drop "
                f'comment "{POLICY_DB}"\n'
                "    udp dport 9 counter drop\n"
                f"    udp dport 10 meta mark set {MARK_UNNAMED:#x} counter drop\n"
            ),
        )
        self.netns.nft(
            self.frontend,
            _ruleset(
                f"    ip saddr 10.77.0.2 udp dport 53 meta mark set {MARK_FRONTEND:#x} counter drop "
                f'comment "{POLICY_FRONTEND}"\n'
            ),
        )
        return self

    def flows(self) -> list[Flow]:
        """10.77.0.1 hammers the database (above the rules' per-source and per-policy thresholds); the rest trickle.

        The senders to DENIED_PORT send a fixed count (rate x DENIED_SECONDS), so the GlobalAlert's sum is known.
        """
        return [
            Flow(self.frontend, "10.77.0.1", "10.77.0.2", DENIED_PORT, 25.0, POLICY_DB, 25 * DENIED_SECONDS),
            Flow(self.frontend, "10.77.0.11", "10.77.0.2", DENIED_PORT, 3.0, POLICY_DB, 3 * DENIED_SECONDS),
            Flow(self.frontend, "10.77.0.12", "10.77.0.2", DENIED_PORT, 2.0, POLICY_DB, 2 * DENIED_SECONDS),
            Flow(self.frontend, "fd77::1", "fd77::2", DENIED_PORT, 2.0, POLICY_DB, 2 * DENIED_SECONDS),
            Flow(self.db, "10.77.0.2", "10.77.0.1", 53, 2.0, POLICY_FRONTEND),
            Flow(self.frontend, "10.77.0.11", "10.77.0.2", 9, 1.0, "no policy: an unmarked drop"),
            Flow(self.frontend, "10.77.0.12", "10.77.0.2", 10, 1.0, f"no comment: mark/{MARK_UNNAMED:#x}"),
        ]

    def start_traffic(self, *, seconds: float) -> None:
        """Start every flow in the background, bounded to ``seconds`` (or its fixed count); close() stops them."""
        for flow in self.flows():
            if flow.count is not None:  # its count, however long it takes (twice the time it needs at most)
                count, limit = flow.count, max(seconds, 2 * flow.count / flow.rate)
            else:
                count, limit = int(flow.rate * seconds) + 1, seconds
            proc = self.netns.popen(
                flow.ns,
                sys.executable,
                "-m",
                "demo.traffic",
                "--src",
                flow.src,
                "--dst",
                flow.dst,
                "--port",
                str(flow.port),
                "--rate",
                str(flow.rate),
                "--count",
                str(count),
                "--seconds",
                str(limit),
                cwd=str(REPO_ROOT),
            )
            if flow.count is not None:
                self.fixed_senders.append(proc)

    def wait_fixed_senders(self, *, timeout: float) -> None:
        """Until every fixed-count sender has sent its count and exited."""
        deadline = time.monotonic() + timeout
        for proc in self.fixed_senders:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def packets_sent_to(self, port: int) -> dict[str, int]:
        """Per destination address, the datagrams the fixed-count senders to ``port`` send in all."""
        sent: dict[str, int] = {}
        for flow in self.flows():
            if flow.port == port and flow.count is not None:
                sent[flow.dst] = sent.get(flow.dst, 0) + flow.count
        return sent

    def nft_counters(self) -> str:
        return self.netns.run(self.db, "nft", "list", "table", "inet", TABLE) + self.netns.run(
            self.frontend, "nft", "list", "table", "inet", TABLE
        )

    def close(self) -> None:
        self.netns.close()
