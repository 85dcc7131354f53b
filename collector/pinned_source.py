"""Drains the pinned maps of the installed program with bpf(2) syscalls (collector/bpf_sys.py).

Two steps, so that a crash at any point neither loses nor double-counts: ``drain()`` points the program at the
spare maps (a map-in-map update, which waits for running programs) and reads the idle ones without deleting; the
agent adds the counts and persists its state (collector/state.py); ``commit()`` then empties what was read. A start
that finds a state saved while the maps' generation is unchanged (saved, then killed before or during the commit)
empties those idle maps first without counting them again (``purge``).

Cost follows entries, not slots: the program counts every entry it inserts, the agent every entry it deletes; while
the two agree all maps are empty and a drain walks nothing. Reading and deleting entries is collector/map_reader.py.
"""

from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from collector import bpf_sys
from collector.bpf_loader import (
    FLOW_KEY_SIZE,
    KEY_SIZE,
    OVERFLOW_KEY_SIZE,
    VALUE_SIZE,
    Drained,
    DropCount,
    FlowCount,
    format_source,
    read_fdinfo,
    read_prog_stats,
    sum_per_cpu,
)
from collector.map_reader import Entry, MapReader, PinnedMap

CACHE_VALUE_SIZE = 48  # struct drop_cache
FLOW_CACHE_VALUE_SIZE = 64  # struct flow_cache
_ZERO_KEY = b"\0" * 4


@dataclass(frozen=True)
class MapNames:
    """The pin names of one set of counting maps in bpf/denied.c."""

    main: str  # <main>_a and <main>_b
    overflow: str  # <overflow>_a and <overflow>_b
    main_slot: str
    overflow_slot: str
    unplaced: str
    cache: str


DROP_MAPS = MapNames("drops", "overflow", "drops_slot", "overflow_slot", "unplaced", "cache")
FLOW_MAP_NAMES = MapNames("flows", "flow_overflow", "flows_slot", "flow_overflow_slot", "flow_unplaced", "flow_cache")


class CountingMaps:
    """One double-buffered set: two counting maps and two per-policy overflow maps, of which slot 0 of a
    map-in-map array points the program at one each; a monotonic per-CPU counter of drops no map could place;
    a per-CPU last-key cache of two generations."""

    def __init__(self, pin_dir: Path, names: MapNames, *, key_size: int, cache_value_size: int, ncpu: int) -> None:
        per_cpu = VALUE_SIZE * ncpu
        self.main = [PinnedMap(pin_dir / f"{names.main}_{x}", key_size=key_size, value_size=per_cpu) for x in "ab"]
        self.overflow = [
            PinnedMap(pin_dir / f"{names.overflow}_{x}", key_size=OVERFLOW_KEY_SIZE, value_size=per_cpu) for x in "ab"
        ]
        self.main_slot = PinnedMap(pin_dir / names.main_slot, key_size=4, value_size=4)
        self.overflow_slot = PinnedMap(pin_dir / names.overflow_slot, key_size=4, value_size=4)
        self.unplaced = PinnedMap(pin_dir / names.unplaced, key_size=4, value_size=per_cpu)
        self.cache = PinnedMap(pin_dir / names.cache, key_size=4, value_size=cache_value_size * ncpu)
        self.key_size = key_size
        self.cache_value_size = cache_value_size
        self.ncpu = ncpu

    def point_at(self, index: int) -> None:
        """Count into maps ``index`` from now on; each update waits for programs still using the old map."""
        bpf_sys.update(self.main_slot.fd, _ZERO_KEY, struct.pack("<I", self.main[index].fd))
        bpf_sys.update(self.overflow_slot.fd, _ZERO_KEY, struct.pack("<I", self.overflow[index].fd))

    def unplaced_total(self) -> tuple[int, int]:
        raw = bpf_sys.lookup(self.unplaced.fd, _ZERO_KEY, self.unplaced.value_size)
        return sum_per_cpu(raw, self.ncpu, VALUE_SIZE) if raw else (0, 0)

    def cached(self, index: int) -> list[tuple[bytes, int, int]]:
        """(key, packets, bytes) of every CPU's cached run in generation ``index``."""
        raw = bpf_sys.lookup(self.cache.fd, struct.pack("<I", index), self.cache.value_size) or b""
        size, found = self.cache_value_size, []
        for cpu in range(len(raw) // size):
            packets, nbytes = struct.unpack_from("<QQ", raw, cpu * size + self.key_size)
            if packets:
                found.append((raw[cpu * size : cpu * size + self.key_size], packets, nbytes))
        return found

    def clear_cache(self, index: int) -> None:
        bpf_sys.update(self.cache.fd, struct.pack("<I", index), b"\0" * self.cache.value_size)

    def close(self) -> None:
        for m in (*self.main, *self.overflow, self.main_slot, self.overflow_slot, self.unplaced, self.cache):
            m.close()


@dataclass
class _Pending:
    """What one ``drain()`` read and ``commit()`` must delete."""

    index: int
    deletes: list[tuple[PinnedMap, list[bytes]]] = field(default_factory=list)
    caches: list[CountingMaps] = field(default_factory=list)  # whose cache of generation ``index`` to clear


class PinnedDropSource:
    """The production DropSource: the pinned maps of an installed program."""

    def __init__(self, pin_dir: Path, *, ncpu: int | None = None) -> None:
        self.pin_dir = pin_dir
        self._ncpu = ncpu or bpf_sys.possible_cpus()
        self._drops = CountingMaps(
            pin_dir, DROP_MAPS, key_size=KEY_SIZE, cache_value_size=CACHE_VALUE_SIZE, ncpu=self._ncpu
        )
        self._generation = PinnedMap(pin_dir / "generation", key_size=4, value_size=4)
        self._inserts = PinnedMap(pin_dir / "inserts", key_size=4, value_size=8 * self._ncpu)
        self._drained = PinnedMap(pin_dir / "drained", key_size=4, value_size=8)
        # a program built with --flow-logs has the flow maps too, swapped and drained with the others
        self.flow_logs = (pin_dir / "flows_a").exists()
        self._flows: CountingMaps | None = None
        if self.flow_logs:
            self._flows = CountingMaps(
                pin_dir, FLOW_MAP_NAMES, key_size=FLOW_KEY_SIZE, cache_value_size=FLOW_CACHE_VALUE_SIZE, ncpu=self._ncpu
            )
        self._prog_fd = bpf_sys.obj_get(pin_dir / "prog")
        self._reader = MapReader(self._ncpu)
        self._pending: _Pending | None = None
        self._empty_at: int | None = None  # the insert count when the last walk found the idle maps empty
        self.unplaced_seen = (0, 0)  # the monotonic unplaced counter's value already counted
        # flow records are not part of the saved state: flow drops no map could place while no agent ran are
        # not reported as flow records (they are in the policy series)
        self.flow_unplaced_seen = self.flow_unplaced_total()

    @property
    def batch_ok(self) -> bool:
        """False: the kernel lacks batch map ops, maps are read key by key."""
        return self._reader.batch_ok

    @batch_ok.setter
    def batch_ok(self, value: bool) -> None:
        self._reader.batch_ok = value

    def _sets(self) -> list[CountingMaps]:
        return [self._drops] if self._flows is None else [self._drops, self._flows]

    # -- generation and slots -------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        raw = bpf_sys.lookup(self._generation.fd, _ZERO_KEY, 4)
        return struct.unpack("<I", raw)[0] if raw else 0

    @property
    def pending_index(self) -> int | None:
        """The maps the last ``drain()`` read and ``commit()`` has not emptied yet."""
        return self._pending.index if self._pending is not None else None

    def _advance(self, generation: int) -> None:
        """Count into maps ``generation & 1``. The generation only grows: the program's per-CPU namespace cache
        is valid for one generation, so it must never come back to an old value."""
        # generation first: the slot updates below wait for every program that may still use the old one
        bpf_sys.update(self._generation.fd, _ZERO_KEY, struct.pack("<I", generation & 0xFFFFFFFF))
        for maps in self._sets():
            maps.point_at(generation & 1)

    def _counter(self, m: PinnedMap) -> int:
        raw = bpf_sys.lookup(m.fd, _ZERO_KEY, m.value_size)
        return sum(array("Q", raw)) if raw else 0

    def unplaced_total(self) -> tuple[int, int]:
        return self._drops.unplaced_total()

    def flow_unplaced_total(self) -> tuple[int, int]:
        return self._flows.unplaced_total() if self._flows is not None else (0, 0)

    # -- draining -------------------------------------------------------------------------------------------
    def drain(self) -> Drained:
        if self._pending is not None:
            self.commit()  # counts added but never committed (the agent's tick failed after the drain)
        generation = self.generation
        idle = generation & 1
        if self._nothing_new(idle):
            return Drained()  # no swap: its two waits for running programs are most of an idle drain's cost
        self._advance(generation + 1)  # waits for running programs: the idle maps now have no writer
        pending = _Pending(index=idle)  # the drain's own until it has read everything: a failed read deletes nothing
        drops: list[DropCount] = []
        overflow: list[DropCount] = []
        flows: list[FlowCount] = []
        inserted = self._counter(self._inserts)
        if inserted != self._counter(self._drained):  # else every map is empty: walk nothing
            drops = [drop_count(raw, p, b) for raw, (p, b) in self._read(pending, self._drops.main[idle])]
            overflow = [overflow_count(raw, p, b) for raw, (p, b) in self._read(pending, self._drops.overflow[idle])]
            if self._flows is not None:
                flows = [parse_flow_key(raw, p, b) for raw, (p, b) in self._read(pending, self._flows.main[idle])]
                for raw, (p, b) in self._read(pending, self._flows.overflow[idle]):
                    policy, netns = struct.unpack("<II", raw)
                    flows.append(FlowCount(policy, netns, 0, "", 0, "", 0, p, b, overflow=True))
            self._walked(inserted, found=bool(drops or overflow or flows))
        map_entries = len(drops)
        cached = [drop_count(key, p, b) for key, p, b in self._drops.cached(idle)]
        pending.caches += [self._drops] if cached else []
        drops.extend(cached)
        total_p, total_b = self.unplaced_total()
        seen_p, seen_b = self.unplaced_seen
        self.unplaced_seen = (total_p, total_b)
        if self._flows is not None:
            cached_flows = [parse_flow_key(key, p, b) for key, p, b in self._flows.cached(idle)]
            pending.caches += [self._flows] if cached_flows else []
            flows.extend(cached_flows)
        flow_p, flow_b = self.flow_unplaced_total()
        flow_seen_p, flow_seen_b = self.flow_unplaced_seen
        self.flow_unplaced_seen = (flow_p, flow_b)
        self._pending = pending
        return Drained(
            flows=flows,
            flow_unplaced_packets=flow_p - flow_seen_p,
            flow_unplaced_bytes=flow_b - flow_seen_b,
            drops=drops,
            overflow=overflow,
            unplaced_packets=total_p - seen_p,
            unplaced_bytes=total_b - seen_b,
            map_entries=map_entries,
        )

    def _read(self, pending: _Pending, m: PinnedMap) -> list[Entry]:
        keys: list[bytes] = []
        pending.deletes.append((m, keys))
        return self._reader.read(m, keys)

    def _walked(self, inserted: int, *, found: bool) -> None:
        if found:
            self._empty_at = None
            return
        # both generations walked empty with no insert in between: the two counts are out of step (an agent
        # killed between a delete and its bookkeeping); bring them back together
        if self._empty_at == inserted:
            bpf_sys.update(self._drained.fd, _ZERO_KEY, struct.pack("<Q", inserted))
        self._empty_at = inserted

    def _nothing_new(self, active: int) -> bool:
        """No entry inserted since the last drain, nothing in the active cache, no new unplaced drop.

        Read while the program may be writing: a count that lands just after this look is drained next time."""
        if self._counter(self._inserts) != self._counter(self._drained):
            return False
        if self.unplaced_total() != self.unplaced_seen or self.flow_unplaced_total() != self.flow_unplaced_seen:
            return False
        return not self._drops.cached(active)

    def commit(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        deleted = sum(self._reader.delete(m, keys) for m, keys in pending.deletes)
        if deleted:
            total = self._counter(self._drained) + deleted
            bpf_sys.update(self._drained.fd, _ZERO_KEY, struct.pack("<Q", total))
        for maps in pending.caches:
            maps.clear_cache(pending.index)

    def purge(self, index: int) -> None:
        """Empty the idle maps ``index`` without counting them: a saved state already holds their counts."""
        pending = _Pending(index=index, caches=self._sets())
        for maps in self._sets():
            for m in (maps.main[index], maps.overflow[index]):
                pending.deletes.append((m, MapReader.keys(m)))
        self._pending = pending
        self.commit()

    # -- facts ----------------------------------------------------------------------------------------------
    def bpf_stats(self) -> tuple[int, int] | None:
        return read_prog_stats(self._prog_fd)

    def recursion_misses(self) -> int | None:
        """Runs the kernel skipped because the program was already running on that CPU (nested)."""
        return read_fdinfo(self._prog_fd).get("recursion_misses")

    @property
    def program_id(self) -> int | None:
        """The kernel's id of the attached program (``bpftool prog show id N``)."""
        return read_fdinfo(self._prog_fd).get("prog_id")

    def close(self) -> None:
        """Close the agent's fds; the pins keep the program attached and counting."""
        for maps in self._sets():
            maps.close()
        for m in (self._generation, self._inserts, self._drained):
            m.close()
        os.close(self._prog_fd)


_DROP_KEY = struct.Struct("<IIB7x16s")  # struct drop_key
_OVERFLOW_KEY = struct.Struct("<II")  # struct overflow_key
_FLOW_KEY = struct.Struct("<IIBBHH2x16s16s")  # struct flow_key


def drop_count(raw: bytes, packets: int, nbytes: int) -> DropCount:
    policy, netns, family, addr = _DROP_KEY.unpack(raw)
    return DropCount(policy, format_source(addr, family), packets, nbytes, netns)


def overflow_count(raw: bytes, packets: int, nbytes: int) -> DropCount:
    policy, netns = _OVERFLOW_KEY.unpack(raw)
    return DropCount(policy, "overflow", packets, nbytes, netns)


def parse_flow_key(raw: bytes, packets: int, nbytes: int) -> FlowCount:
    policy, netns, family, proto, sport, dport, saddr, daddr = _FLOW_KEY.unpack(raw)
    return FlowCount(
        policy, netns, proto, format_source(saddr, family), sport, format_source(daddr, family), dport, packets, nbytes
    )
