"""Processes as ``/proc`` shows them (Linux): a process's tree, which of them still run, their CPU time."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def _stats() -> dict[int, list[str]]:
    """pid -> the fields of ``/proc/PID/stat`` after the command name (state, ppid, ...)."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # (exited meanwhile)
    return found


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    stats = _stats()
    tree = {pid}
    while True:
        below = {child for child, fields in stats.items() if int(fields[1]) in tree} - tree
        if not below:
            return tree
        tree |= below


def running(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that exist and are not zombies."""
    stats = _stats()
    return {pid for pid in pids if pid in stats and stats[pid][0] != "Z"}


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds that the running ones of ``pids`` have used."""
    stats = _stats()
    ticks = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in pids if pid in stats)
    return ticks / os.sysconf("SC_CLK_TCK")
