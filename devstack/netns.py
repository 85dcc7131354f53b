"""Network namespaces, veth pairs and nftables rulesets that are always removed.

``Netns`` records everything it makes (namespaces, host-side veths, host nft tables, processes) and ``close()``
undoes all of it, in reverse order, ignoring what is already gone; the ``netns`` fixture calls it in ``finally``
so a failing test leaves nothing behind. Names start with ``pwt`` (policywatch test) plus a random suffix, so
parallel runs and leftovers of a killed run never collide. Plain class, reused by the demo.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
from collections.abc import Sequence

from devstack.services import dies_with_parent

# Interface names are limited to 15 bytes (IFNAMSIZ - 1).
_IFNAME_MAX = 15
_TABLE_RE = re.compile(r"^\s*table\s+(ip|ip6|inet|arp|bridge|netdev)\s+([A-Za-z0-9_.-]+)", re.MULTILINE)


class NetnsUnavailable(RuntimeError):
    """This process cannot create network namespaces (not root, or the kernel refuses)."""


def _run(argv: Sequence[str], *, input_text: str | None = None, check: bool = True, timeout: float = 30.0) -> str:
    result = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, list(argv), result.stdout, result.stderr)
    return result.stdout


def netns_support() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (CI runs as root)"
    probe = f"pwtprobe{secrets.token_hex(3)}"
    try:
        _run(["ip", "netns", "add", probe])
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed; run scripts/setup"
    except subprocess.CalledProcessError as err:
        return f"the kernel refused a network namespace: {err.stderr.strip()}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


class Netns:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.host_links: list[str] = []
        self.host_tables: list[tuple[str, str]] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._links = 0

    # -- creation -------------------------------------------------------------------------------------------
    def add(self, hint: str = "ns") -> str:
        """Create a namespace with loopback up; return its name (``pwt-<hint>-<tag>``)."""
        name = f"pwt-{re.sub(r'[^a-z0-9]', '', hint.lower())[:12]}-{self.tag}"
        if name in self.namespaces:
            name = f"{name}-{len(self.namespaces)}"
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")
        return name

    def veth(
        self,
        ns_a: str | None,
        ns_b: str | None,
        *,
        addrs_a: Sequence[str] = (),
        addrs_b: Sequence[str] = (),
    ) -> tuple[str, str]:
        """A veth pair between two namespaces (None = the host), addresses set (IPv6 without DAD), both up."""
        self._links += 1
        if_a = f"pw{self.tag}a{self._links}"[:_IFNAME_MAX]
        if_b = f"pw{self.tag}b{self._links}"[:_IFNAME_MAX]
        _run(["ip", "link", "add", if_a, "type", "veth", "peer", "name", if_b])
        self.host_links.append(if_a)  # deleting one end deletes the pair; gone with its namespace anyway
        for ifname, ns, addrs in ((if_a, ns_a, addrs_a), (if_b, ns_b, addrs_b)):
            if ns is not None:
                _run(["ip", "link", "set", ifname, "netns", ns])
            for addr in addrs:
                extra = ["nodad"] if ":" in addr else []
                self.run(ns, "ip", "addr", "add", addr, "dev", ifname, *extra)
            self.run(ns, "ip", "link", "set", ifname, "up")
        return if_a, if_b

    def nft(self, ns: str | None, ruleset: str) -> None:
        """Load nft ruleset text (``nft -f -``) in a namespace or (None) on the host.

        Host tables named in the text are deleted at close(); namespace tables go with the namespace.
        """
        if ns is None:
            for family, table in _TABLE_RE.findall(ruleset):
                if (family, table) not in self.host_tables:
                    self.host_tables.append((family, table))
        self.run(ns, "nft", "-f", "-", input_text=ruleset)

    # -- running ----------------------------------------------------------------------------------------------
    @staticmethod
    def _argv(ns: str | None, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv] if ns is not None else list(argv)

    def run(
        self, ns: str | None, *argv: str, input_text: str | None = None, check: bool = True, timeout: float = 30.0
    ) -> str:
        """Run a command in ``ns`` (None = host); return its stdout; raise with stderr on failure."""
        return _run(self._argv(ns, argv), input_text=input_text, check=check, timeout=timeout)

    def popen(self, ns: str | None, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a background process in ``ns``; it is killed at close() if still running, and gets SIGTERM
        if this process dies first."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            dies_with_parent(self._argv(ns, argv)), start_new_session=True, **kwargs
        )
        self.processes.append(proc)
        return proc

    # -- teardown ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.processes.clear()
        for family, table in reversed(self.host_tables):
            _run(["nft", "delete", "table", family, table], check=False)
        self.host_tables.clear()
        for link in reversed(self.host_links):
            _run(["ip", "link", "del", link], check=False)
        self.host_links.clear()
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
