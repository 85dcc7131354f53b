"""Start and stop without loss: reuse the pinned program, restore the saved state, drain replaced programs.

A start finds the program for this configuration pinned and attached (it kept counting while no agent ran),
reads the state file and continues every series total from it; the saved drain whose maps may not have been
emptied is emptied without being counted twice. A changed program replaces the old one; the old maps are drained
once more, then unpinned. A stop drains, saves and closes: the program stays attached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collector.bpf_loader import Drained, Installed, ProgramConfig, ensure_installed, remove_pins
from collector.pinned_source import PinnedDropSource
from collector.series import SeriesStore
from collector.state import AgentState, SavedSeries, load, save

log = logging.getLogger(__name__)


@dataclass
class Started:
    source: PinnedDropSource
    installed: Installed
    restored: int  # series continued from the state file
    retired: list[Drained]  # last drains of replaced programs, for the agent to add


def start(*, config: ProgramConfig, bpf_dir: Path, state_file: Path, store: SeriesStore) -> Started:
    installed = ensure_installed(config=config, bpf_dir=bpf_dir)
    source = PinnedDropSource(installed.pin_dir)
    state = load(state_file)
    restored = 0
    retired: list[Drained] = []
    if state is not None:
        restored = store.restore([(s.policy, s.src_ip, s.packets, s.bytes, s.age) for s in state.series])
    for old in installed.retired:
        retired.extend(_last_drains(old, state))
        remove_pins(old)
    if state is not None and state.program == installed.pin_dir.name and installed.reused:
        if state.pending is not None and state.generation == source.generation:
            source.purge(state.pending)  # saved but maybe not emptied before the last agent stopped
        source.unplaced_seen = state.unplaced_seen
    return Started(source=source, installed=installed, restored=restored, retired=retired)


def _last_drains(old: Path, state: AgentState | None) -> list[Drained]:
    """Both generations of a replaced (already detached) program's maps; nothing writes them any more."""
    try:
        source = PinnedDropSource(old)
    except OSError as exc:
        log.warning("cannot open the replaced program's maps in %s (%s); their undrained counts are lost", old, exc)
        return []
    try:
        if state is not None and state.program == old.name:
            if state.pending is not None and state.generation == source.generation:
                source.purge(state.pending)
            source.unplaced_seen = state.unplaced_seen
        drains = []
        for _ in range(2):
            drains.append(source.drain())
            source.commit()
        return drains
    except OSError as exc:
        log.warning("cannot drain the replaced program's maps in %s (%s); their undrained counts are lost", old, exc)
        return []
    finally:
        source.close()


def persister(*, state_file: Path, source: PinnedDropSource, store: SeriesStore) -> Callable[[], None]:
    """The agent's persist step: the series and the maps' bookkeeping, saved before the maps are emptied."""

    def persist() -> None:
        save(
            state_file,
            AgentState(
                program=source.pin_dir.name,
                generation=source.generation,
                pending=source.pending_index,
                unplaced_seen=source.unplaced_seen,
                series=tuple(SavedSeries(*entry) for entry in store.snapshot()),
                saved_at=time.time(),
            ),
        )

    return persist
