"""Reads the netfilter rules of the host and of every network namespace under /run/netns.

libnftables (Debian's python3-nftables) runs in-process: a short-lived worker thread enters each namespace
with setns(2), which changes only that thread's namespace, so the rest of the process never moves. Where that
namespace has iptables-nft tables (xt expressions in the nft JSON) or iptables-legacy tables
(``/proc/thread-self/net/ip_tables_names``), the matching save command runs too, forked from that thread and so
inside the namespace. Each namespace is identified by its inode, which the BPF program reads for every drop.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from collector.iptables import strip_counters

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
HOST = "host"
_CLONE_NEWNET = 0x40000000


# (family of the tables it prints, command); ip6 twins print ip6 tables
SAVE_COMMANDS = {
    "nft": (("ip", "iptables-nft-save"), ("ip6", "ip6tables-nft-save")),
    "legacy": (("ip", "iptables-legacy-save"), ("ip6", "ip6tables-legacy-save")),
}
_LEGACY_NAMES = {"ip": "ip_tables_names", "ip6": "ip6_tables_names"}


@dataclass(frozen=True)
class SavedTables:
    command: str  # e.g. "iptables-legacy-save"
    family: str  # "ip" or "ip6"
    text: str  # without counters


@dataclass(frozen=True)
class Ruleset:
    namespace: str  # "host" or the name under /run/netns
    text: str  # stateless JSON (no counter values), so unchanged rules read as unchanged text
    inode: int = 0  # the namespace's inode (``stat -L /run/netns/NAME``), as the BPF program reads it
    iptables: tuple[SavedTables, ...] = ()

    def parsed(self) -> dict[str, Any]:
        data = json.loads(self.text)
        return data if isinstance(data, dict) else {}


def check_libnftables() -> None:
    """Raise ImportError with the fix when Debian's python3-nftables is not importable."""
    try:
        import nftables  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "libnftables' Python module is missing; fix: apt-get install python3-nftables (scripts/setup does), "
            "and use a Python that sees Debian's dist-packages"
        ) from exc


class RulesetReader(Protocol):
    def read_all(self) -> list[Ruleset]: ...


def _list_ruleset_json() -> str:
    import nftables  # Debian's python3-nftables (libnftables), seen through the venv's system site-packages

    nft = nftables.Nftables()
    nft.set_json_output(True)
    nft.set_stateless_output(True)
    rc, output, error = nft.cmd("list ruleset")
    if rc != 0:
        raise OSError(f"nft list ruleset failed: {error.strip()}")
    return str(output)


def _run_save(command: str) -> str | None:
    """One save command's output in the calling thread's namespace, or None when it is missing or fails."""
    try:
        done = subprocess.run([command], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s not run: %s", command, exc)
        return None
    if done.returncode != 0:
        log.debug("%s failed: %s", command, done.stderr.strip())
        return None
    return done.stdout


def xt_families(text: str) -> set[str]:
    """Families of nft tables holding xt expressions (iptables-nft's MARK target and comment match)."""
    if '"xt"' not in text:
        return set()
    try:
        items = json.loads(text).get("nftables", [])
    except (ValueError, AttributeError):
        return set()
    found = set()
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if isinstance(rule, dict) and any(isinstance(e, dict) and "xt" in e for e in rule.get("expr", [])):
            found.add(str(rule.get("family")))
    return found


def legacy_families(proc_net: Path = Path("/proc/thread-self/net")) -> set[str]:
    """Families with iptables-legacy tables in the calling thread's namespace."""
    found = set()
    for family, name in _LEGACY_NAMES.items():
        try:
            if (proc_net / name).read_text().strip():
                found.add(family)
        except OSError:
            continue
    return found


class NftRulesetReader:
    """Host ruleset plus one per namespace file in ``netns_dir``; namespaces that vanish midway are skipped."""

    def __init__(
        self,
        *,
        netns_dir: Path = NETNS_DIR,
        lister: Callable[[], str] = _list_ruleset_json,
        saver: Callable[[str], str | None] = _run_save,
        legacy: Callable[[], set[str]] = legacy_families,
    ) -> None:
        self._netns_dir = netns_dir
        self._lister = lister
        self._saver = saver
        self._legacy = legacy
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._warned: set[str] = set()  # namespaces already warned about, so a stale one does not flood the log

    def namespaces(self) -> list[str]:
        try:
            return sorted(p.name for p in self._netns_dir.iterdir())
        except FileNotFoundError:
            return []

    def read_all(self) -> list[Ruleset]:
        result: list[Ruleset] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                result.append(self._read_here(HOST, _inode(Path("/proc/thread-self/ns/net"))))
                for name in self.namespaces():
                    found = self._read_in(name)
                    if found is not None:
                        result.append(found)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        worker = threading.Thread(target=work, name="nft-reader", daemon=True)
        worker.start()
        worker.join()
        if errors:
            raise errors[0]
        return result

    def _read_here(self, name: str, inode: int) -> Ruleset:
        text = self._lister()
        saved = []
        for kind, families in (("nft", xt_families(text)), ("legacy", self._legacy())):
            for family, command in SAVE_COMMANDS[kind]:
                if family in families:
                    output = self._saver(command)
                    if output is not None:
                        saved.append(SavedTables(command, family, strip_counters(output)))
        return Ruleset(name, text, inode=inode, iptables=tuple(saved))

    def _read_in(self, name: str) -> Ruleset | None:
        path = self._netns_dir / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.debug("namespace %s vanished: %s", name, exc)
            return None
        try:
            if self._libc.setns(fd, _CLONE_NEWNET) != 0:
                self._warn_once(name, f"cannot enter network namespace {name}: {os.strerror(ctypes.get_errno())}")
                return None
        finally:
            os.close(fd)
        try:
            return self._read_here(name, _inode(path))
        except OSError as exc:
            self._warn_once(name, f"cannot read the nft ruleset of namespace {name}: {exc}")
            return None

    def _warn_once(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("%s (not repeated for this namespace)", message)


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0
