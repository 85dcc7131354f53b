"""Reads the nftables rulesets of the host and of every network namespace under /run/netns.

libnftables (Debian's python3-nftables) runs in-process: a short-lived worker thread enters each namespace
with setns(2), which changes only that thread's namespace, so the rest of the process never moves.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
HOST = "host"
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Ruleset:
    namespace: str  # "host" or the name under /run/netns
    text: str  # stateless JSON (no counter values), so unchanged rules read as unchanged text

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


class NftRulesetReader:
    """Host ruleset plus one per namespace file in ``netns_dir``; namespaces that vanish midway are skipped."""

    def __init__(self, *, netns_dir: Path = NETNS_DIR, lister: Callable[[], str] = _list_ruleset_json) -> None:
        self._netns_dir = netns_dir
        self._lister = lister
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
                result.append(Ruleset(HOST, self._lister()))
                for name in self.namespaces():
                    text = self._read_in(name)
                    if text is not None:
                        result.append(Ruleset(name, text))
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        worker = threading.Thread(target=work, name="nft-reader", daemon=True)
        worker.start()
        worker.join()
        if errors:
            raise errors[0]
        return result

    def _read_in(self, name: str) -> str | None:
        try:
            fd = os.open(self._netns_dir / name, os.O_RDONLY)
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
            return self._lister()
        except OSError as exc:
            self._warn_once(name, f"cannot read the nft ruleset of namespace {name}: {exc}")
            return None

    def _warn_once(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("%s (not repeated for this namespace)", message)
