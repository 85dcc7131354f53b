"""Helpers of the collector root tests: a real ``policywatch-collector`` process and its metrics
(the traffic senders are in ``devstack.traffic``)."""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devstack.netns import Netns
from devstack.traffic import UDP_SENDER

COLLECTOR = Path(sys.executable).with_name("policywatch-collector")


PY = sys.executable
# Random per run: other tests on this machine drop packets from their own namespaces, maybe from common addresses.
NET = secrets.randbelow(250) + 1, secrets.randbelow(250) + 1
V4_SRC, V4_DST = f"10.{NET[0]}.{NET[1]}.1", f"10.{NET[0]}.{NET[1]}.2"
V6_SRC, V6_DST = f"fd7e:{NET[0]:x}:{NET[1]:x}::1", f"fd7e:{NET[0]:x}:{NET[1]:x}::2"
UDP_V4_OVERHEAD, UDP_V6_OVERHEAD = 28, 48  # IP + UDP headers: bytes are IP packet lengths, as nft counts them


def pair(netns: Netns) -> tuple[str, str]:
    """Sender and receiver namespaces joined by a veth, with IPv4 and IPv6 addresses."""
    sender, receiver = netns.add("send"), netns.add("recv")
    netns.veth(sender, receiver, addrs_a=[f"{V4_SRC}/24", f"{V6_SRC}/64"], addrs_b=[f"{V4_DST}/24", f"{V6_DST}/64"])
    return sender, receiver


def send(netns: Netns, ns: str, dst: str, port: int, count: int, size: int) -> None:
    netns.run(ns, PY, "-c", UDP_SENDER, dst, str(port), str(count), str(size))


def ours(series: dict[tuple[str, str, str], float], tag: str) -> dict[tuple[str, str, str], float]:
    """Only the series of this test (other tests on the machine may drop packets too)."""
    return {k: v for k, v in series.items() if tag in k[1] or k[2] in (V4_SRC, V6_SRC)}


def tagged_drop(
    netns: Netns, ns: str, *, port: int, mark: int, policy: str, family: str = "inet", hook: str = "input"
) -> None:
    """One deny rule in ``ns``: UDP to ``port`` is tagged with ``mark``, counted and dropped, ``policy`` its comment."""
    netns.nft(
        ns,
        f"""table {family} pwtest {{ chain {hook} {{ type filter hook {hook} priority 0;
            udp dport {port} meta mark set {mark:#x} counter drop comment "{policy}"
        }}
        }}""",
    )


def nft_counter(netns: Netns, ns: str, comment: str) -> tuple[int, int]:
    for line in netns.run(ns, "nft", "list", "ruleset").splitlines():
        if f'comment "{comment}"' in line:
            words = line.split()
            return int(words[words.index("packets") + 1]), int(words[words.index("bytes") + 1])
    raise AssertionError(f"no rule {comment}")


class RunningCollector:
    def __init__(self, proc: subprocess.Popen[str], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def program_id(self) -> int:
        match = re.search(r"attached BPF program id (\d+)", self.log)
        assert match, self.log
        return int(match.group(1))

    def scrape(self, path: str = "/metrics") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def series(self) -> dict[tuple[str, str, str], float]:
        """{(metric, policy, srcIP): value} from /metrics."""
        response = self.scrape()
        assert response.status_code == 200, response.text
        return {
            (s.name, s.labels["policy"], s.labels["srcIP"]): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def health(self, name: str, **labels: str) -> float | None:
        """One sample of /collector/metrics (e.g. ``health("policywatch_collector_unattributed_drops_total",
        namespace="ns")``), or None when it is not there."""
        response = self.scrape("/collector/metrics")
        assert response.status_code == 200, response.text
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def wait_for(
        self, check: Callable[[dict[tuple[str, str, str], float]], bool], timeout: float = 10.0
    ) -> dict[tuple[str, str, str], float]:
        deadline = time.monotonic() + timeout
        while True:
            current = self.series()
            if check(current) or time.monotonic() > deadline:
                return current
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)
