"""The agent's state across restarts: series totals and last-seen ages, in one small file under /run.

Written (to a temporary file, then renamed) after every drain that counted something, before the drained maps
are emptied, so a restart, even after SIGKILL, continues every total instead of starting again at 0. ``generation``
and ``pending`` name the idle maps that drain read: if the program's generation is still the same at the next start,
those maps may not have been emptied yet, and are emptied without being counted again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_STATE_FILE = Path("/run/policywatch/collector-state.json")
FORMAT = 1


@dataclass(frozen=True)
class SavedSeries:
    policy: str
    src_ip: str
    packets: int
    bytes: int
    age: float  # seconds since its last drop, when saved


@dataclass(frozen=True)
class AgentState:
    program: str  # the pin directory's name (the program digest): maps of another program are other maps
    generation: int
    pending: int | None  # index of the maps read by the last saved drain, maybe not emptied yet
    unplaced_seen: tuple[int, int] = (0, 0)
    series: tuple[SavedSeries, ...] = ()
    saved_at: float = field(default=0.0)  # wall clock


def save(path: Path, state: AgentState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "program": state.program,
        "generation": state.generation,
        "pending": state.pending,
        "unplaced_seen": list(state.unplaced_seen),
        "saved_at": state.saved_at,
        "series": [[s.policy, s.src_ip, s.packets, s.bytes, round(s.age, 3)] for s in state.series],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def load(path: Path, *, wall: Callable[[], float] = time.time) -> AgentState | None:
    """The saved state with ages advanced by the time since it was saved; None when there is none usable."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("state file %s is unreadable, starting from zero: %s", path, exc)
        return None
    try:
        if doc["format"] != FORMAT:
            raise ValueError(f"format {doc['format']!r}, expected {FORMAT}")
        elapsed = max(0.0, wall() - float(doc["saved_at"]))
        series = tuple(
            SavedSeries(str(p), str(s), int(n), int(b), float(age) + elapsed) for p, s, n, b, age in doc["series"]
        )
        pending = doc["pending"]
        return AgentState(
            program=str(doc["program"]),
            generation=int(doc["generation"]),
            pending=int(pending) if pending is not None else None,
            unplaced_seen=(int(doc["unplaced_seen"][0]), int(doc["unplaced_seen"][1])),
            series=series,
            saved_at=float(doc["saved_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("state file %s does not hold a collector state (%s), starting from zero", path, exc)
        return None
