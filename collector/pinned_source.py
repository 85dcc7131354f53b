"""Drains the pinned maps of the installed program with bpf(2) syscalls (collector/bpf_sys.py).

Two steps, so that a crash at any point neither loses nor double-counts: ``drain()`` points the program at the
spare maps (a map-in-map update, which waits for running programs) and reads the idle ones without deleting; the
agent adds the counts and persists its state (collector/state.py); ``commit()`` then empties what was read. A start
that finds a state saved while the maps' generation is unchanged (saved, then killed before or during the commit)
empties those idle maps first without counting them again (``purge``).

Cost follows entries, not slots: the program counts every entry it inserts, the agent every entry it deletes; while
the two agree all maps are empty and a drain walks nothing. Reads go through one small chunk buffer.
"""

from __future__ import annotations

import ctypes as ct
import errno
import logging
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
    sum_entries,
    sum_per_cpu,
)

log = logging.getLogger(__name__)

CACHE_VALUE_SIZE = 48  # struct drop_cache
FLOW_CACHE_VALUE_SIZE = 64  # struct flow_cache
CHUNK = 1024  # entries per batch syscall: userspace buffers stay small whatever --map-size is
_ZERO_KEY = b"\0" * 4
_NOT_SUPPORTED = (errno.EINVAL, errno.ENOTSUP, 524)  # 524 = ENOTSUPP (kernel-internal)


class _Map:
    def __init__(self, path: Path, *, key_size: int, value_size: int) -> None:
        self.fd = bpf_sys.obj_get(path)
        self.key_size = key_size
        self.value_size = value_size


@dataclass
class _Pending:
    """What one ``drain()`` read and ``commit()`` must delete."""

    index: int
    drop_keys: list[bytes] = field(default_factory=list)
    overflow_keys: list[bytes] = field(default_factory=list)
    flow_keys: list[bytes] = field(default_factory=list)
    flow_overflow_keys: list[bytes] = field(default_factory=list)
    cache: bool = False
    flow_cache: bool = False


class PinnedDropSource:
    """The production DropSource: the pinned maps of an installed program."""

    def __init__(self, pin_dir: Path, *, ncpu: int | None = None) -> None:
        self.pin_dir = pin_dir
        self._ncpu = ncpu or bpf_sys.possible_cpus()
        per_cpu = VALUE_SIZE * self._ncpu

        def pinned(name: str, key_size: int, value_size: int) -> _Map:
            return _Map(pin_dir / name, key_size=key_size, value_size=value_size)

        self._drops = [pinned(f"drops_{x}", KEY_SIZE, per_cpu) for x in "ab"]
        self._overflow = [pinned(f"overflow_{x}", OVERFLOW_KEY_SIZE, per_cpu) for x in "ab"]
        self._drops_slot = pinned("drops_slot", 4, 4)
        self._overflow_slot = pinned("overflow_slot", 4, 4)
        self._generation = pinned("generation", 4, 4)
        self._cache = pinned("cache", 4, CACHE_VALUE_SIZE * self._ncpu)
        self._unplaced = pinned("unplaced", 4, per_cpu)
        self._inserts = pinned("inserts", 4, 8 * self._ncpu)
        self._drained = pinned("drained", 4, 8)
        self._maps = [*self._drops, *self._overflow, self._drops_slot, self._overflow_slot, self._generation]
        self._maps += [self._cache, self._unplaced, self._inserts, self._drained]
        # a program built with --flow-logs has the flow maps too, swapped and drained with the others
        self.flow_logs = (pin_dir / "flows_a").exists()
        self._flows: list[_Map] = []
        self._flow_overflow: list[_Map] = []
        self._flow_slots: list[_Map] = []
        if self.flow_logs:
            self._flows = [pinned(f"flows_{x}", FLOW_KEY_SIZE, per_cpu) for x in "ab"]
            self._flow_overflow = [pinned(f"flow_overflow_{x}", OVERFLOW_KEY_SIZE, per_cpu) for x in "ab"]
            self._flow_slots = [pinned("flows_slot", 4, 4), pinned("flow_overflow_slot", 4, 4)]
            self._flow_unplaced = pinned("flow_unplaced", 4, per_cpu)
            self._flow_cache = pinned("flow_cache", 4, FLOW_CACHE_VALUE_SIZE * self._ncpu)
            self._maps += [*self._flows, *self._flow_overflow, *self._flow_slots, self._flow_unplaced]
            self._maps.append(self._flow_cache)
        self._prog_fd = bpf_sys.obj_get(pin_dir / "prog")
        self._keys = ct.create_string_buffer(FLOW_KEY_SIZE * CHUNK)
        self._values = ct.create_string_buffer(per_cpu * CHUNK)
        self._token = ct.create_string_buffer(8)
        self._next_token = ct.create_string_buffer(8)
        self._pending: _Pending | None = None
        self.batch_ok = True  # False: the kernel lacks batch map ops, maps are read key by key
        self._empty_at: int | None = None  # the insert count when the last walk found the idle maps empty
        self.unplaced_seen = (0, 0)  # the monotonic unplaced counter's value already counted
        # flow records are not part of the saved state: flow drops no map could place while no agent ran are
        # not reported as flow records (they are in the policy series)
        self.flow_unplaced_seen = self.flow_unplaced_total()

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
        index = generation & 1
        # generation first: the slot updates below wait for every program that may still use the old one
        bpf_sys.update(self._generation.fd, _ZERO_KEY, struct.pack("<I", generation & 0xFFFFFFFF))
        bpf_sys.update(self._drops_slot.fd, _ZERO_KEY, struct.pack("<I", self._drops[index].fd))
        bpf_sys.update(self._overflow_slot.fd, _ZERO_KEY, struct.pack("<I", self._overflow[index].fd))
        if self.flow_logs:
            flows_slot, flow_overflow_slot = self._flow_slots
            bpf_sys.update(flows_slot.fd, _ZERO_KEY, struct.pack("<I", self._flows[index].fd))
            bpf_sys.update(flow_overflow_slot.fd, _ZERO_KEY, struct.pack("<I", self._flow_overflow[index].fd))

    def _counter(self, m: _Map) -> int:
        raw = bpf_sys.lookup(m.fd, _ZERO_KEY, m.value_size)
        return sum(array("Q", raw)) if raw else 0

    def unplaced_total(self) -> tuple[int, int]:
        raw = bpf_sys.lookup(self._unplaced.fd, _ZERO_KEY, self._unplaced.value_size)
        return sum_per_cpu(raw, self._ncpu, VALUE_SIZE) if raw else (0, 0)

    def flow_unplaced_total(self) -> tuple[int, int]:
        if not self.flow_logs:
            return (0, 0)
        raw = bpf_sys.lookup(self._flow_unplaced.fd, _ZERO_KEY, self._flow_unplaced.value_size)
        return sum_per_cpu(raw, self._ncpu, VALUE_SIZE) if raw else (0, 0)

    # -- draining -------------------------------------------------------------------------------------------
    def drain(self) -> Drained:
        if self._pending is not None:
            self.commit()  # counts added but never committed (the agent's tick failed after the drain)
        generation = self.generation
        idle = generation & 1
        if self._nothing_new(idle):
            return Drained()  # no swap: its two waits for running programs are most of an idle drain's cost
        self._advance(generation + 1)  # waits for running programs: the idle maps now have no writer
        pending = _Pending(index=idle)
        drops: list[DropCount] = []
        overflow: list[DropCount] = []
        flows: list[FlowCount] = []
        inserted = self._counter(self._inserts)
        if inserted != self._counter(self._drained):  # else every map is empty: walk nothing
            for raw, (p, b) in self._read(self._drops[idle], pending.drop_keys):
                pid, ns, fam, addr = parse_key(raw)
                drops.append(DropCount(pid, format_source(addr, fam), p, b, ns))
            for raw, (p, b) in self._read(self._overflow[idle], pending.overflow_keys):
                pid, ns, _fam, _addr = parse_key(raw)
                overflow.append(DropCount(pid, "overflow", p, b, ns))
            if self.flow_logs:
                for raw, (p, b) in self._read(self._flows[idle], pending.flow_keys):
                    flows.append(parse_flow_key(raw, p, b))
                for raw, (p, b) in self._read(self._flow_overflow[idle], pending.flow_overflow_keys):
                    pid, ns, _fam, _addr = parse_key(raw)
                    flows.append(FlowCount(pid, ns, 0, "", 0, "", 0, p, b, overflow=True))
            if drops or overflow or flows:
                self._empty_at = None
            else:
                # both generations walked empty with no insert in between: the two counts are out of step (an
                # agent killed between a delete and its bookkeeping); bring them back together
                if self._empty_at == inserted:
                    bpf_sys.update(self._drained.fd, _ZERO_KEY, struct.pack("<Q", inserted))
                self._empty_at = inserted
        map_entries = len(drops)
        cached = self._read_cache(idle)
        pending.cache = bool(cached)
        drops.extend(cached)
        total_p, total_b = self.unplaced_total()
        seen_p, seen_b = self.unplaced_seen
        self.unplaced_seen = (total_p, total_b)
        if self.flow_logs:
            cached_flows = self._read_flow_cache(idle)
            pending.flow_cache = bool(cached_flows)
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

    def _nothing_new(self, active: int) -> bool:
        """No entry inserted since the last drain, nothing in the active cache, no new unplaced drop.

        Read while the program may be writing: a count that lands just after this look is drained next time."""
        if self._counter(self._inserts) != self._counter(self._drained):
            return False
        if self.unplaced_total() != self.unplaced_seen or self.flow_unplaced_total() != self.flow_unplaced_seen:
            return False
        raw = bpf_sys.lookup(self._cache.fd, struct.pack("<I", active), self._cache.value_size) or b""
        return not any(
            struct.unpack_from("<Q", raw, cpu * CACHE_VALUE_SIZE + KEY_SIZE)[0]
            for cpu in range(len(raw) // CACHE_VALUE_SIZE)
        )

    def commit(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        deleted = self._delete(self._drops[pending.index], pending.drop_keys)
        deleted += self._delete(self._overflow[pending.index], pending.overflow_keys)
        if self.flow_logs:
            deleted += self._delete(self._flows[pending.index], pending.flow_keys)
            deleted += self._delete(self._flow_overflow[pending.index], pending.flow_overflow_keys)
        if deleted:
            total = self._counter(self._drained) + deleted
            bpf_sys.update(self._drained.fd, _ZERO_KEY, struct.pack("<Q", total))
        if pending.cache:
            bpf_sys.update(self._cache.fd, struct.pack("<I", pending.index), b"\0" * self._cache.value_size)
        if pending.flow_cache and self.flow_logs:
            size = self._flow_cache.value_size
            bpf_sys.update(self._flow_cache.fd, struct.pack("<I", pending.index), b"\0" * size)

    def purge(self, index: int) -> None:
        """Empty the idle maps ``index`` without counting them: a saved state already holds their counts."""
        pending = _Pending(index=index, cache=True, flow_cache=True)
        maps = [(self._drops[index], pending.drop_keys), (self._overflow[index], pending.overflow_keys)]
        if self.flow_logs:
            maps += [(self._flows[index], pending.flow_keys), (self._flow_overflow[index], pending.flow_overflow_keys)]
        for m, keys in maps:
            key = None
            while (key := bpf_sys.next_key(m.fd, key, m.key_size)) is not None:
                keys.append(key)
        self._pending = pending
        self.commit()

    def _read(self, m: _Map, keys_out: list[bytes]) -> list[tuple[bytes, tuple[int, int]]]:
        if self.batch_ok:
            try:
                return self._read_batch(m, keys_out)
            except OSError as exc:
                if exc.errno in _NOT_SUPPORTED and not keys_out:
                    log.info("kernel lacks batch map ops; draining key by key")
                    self.batch_ok = False
                elif exc.errno != errno.ENOSPC:  # ENOSPC: a bucket larger than the chunk; key by key this once
                    raise
                keys_out.clear()
        return self._read_per_key(m, keys_out)

    def _read_batch(self, m: _Map, keys_out: list[bytes]) -> list[tuple[bytes, tuple[int, int]]]:
        out: list[tuple[bytes, tuple[int, int]]] = []
        first = True
        while True:
            count, done = bpf_sys.lookup_batch(
                m.fd,
                token=None if first else self._token,
                next_token=self._next_token,
                keys=self._keys,
                values=self._values,
                count=CHUNK,
            )
            first = False
            ct.memmove(self._token, self._next_token, 8)
            if count:
                keys = ct.string_at(self._keys, count * m.key_size)
                sums = sum_entries(ct.string_at(self._values, count * m.value_size), count, self._ncpu)
                for i in range(count):
                    raw = keys[i * m.key_size : (i + 1) * m.key_size]
                    keys_out.append(raw)
                    out.append((raw, sums[i]))
            if done:
                return out

    def _read_per_key(self, m: _Map, keys_out: list[bytes]) -> list[tuple[bytes, tuple[int, int]]]:
        out: list[tuple[bytes, tuple[int, int]]] = []
        key = None
        while (key := bpf_sys.next_key(m.fd, key, m.key_size)) is not None:
            value = bpf_sys.lookup(m.fd, key, m.value_size)
            if value is not None:
                keys_out.append(key)
                out.append((key, sum_per_cpu(value, self._ncpu, VALUE_SIZE)))
        return out

    def _delete(self, m: _Map, keys: list[bytes]) -> int:
        """Delete ``keys``; a failing batch falls back to one by one, so nothing read stays behind."""
        deleted = 0
        for start in range(0, len(keys), CHUNK):
            part = keys[start : start + CHUNK]
            if self.batch_ok:
                buf = ct.create_string_buffer(b"".join(part), len(part) * m.key_size)
                try:
                    deleted += bpf_sys.delete_batch(m.fd, buf, len(part))
                    continue
                except OSError as exc:
                    log.debug("batch delete failed (%s); deleting key by key", exc)
            deleted += sum(bpf_sys.delete(m.fd, k) for k in part)
        return deleted

    def _read_cache(self, index: int) -> list[DropCount]:
        """The per-CPU last-key cache of a generation no program writes any more."""
        raw = bpf_sys.lookup(self._cache.fd, struct.pack("<I", index), self._cache.value_size) or b""
        found = []
        for cpu in range(len(raw) // CACHE_VALUE_SIZE):
            entry = raw[cpu * CACHE_VALUE_SIZE : (cpu + 1) * CACHE_VALUE_SIZE]
            packets, nbytes = struct.unpack_from("<QQ", entry, KEY_SIZE)
            if packets:
                pid, ns, fam, addr = parse_key(entry[:KEY_SIZE])
                found.append(DropCount(pid, format_source(addr, fam), packets, nbytes, ns))
        return found

    def _read_flow_cache(self, index: int) -> list[FlowCount]:
        """The per-CPU last-flow cache of a generation no program writes any more."""
        raw = bpf_sys.lookup(self._flow_cache.fd, struct.pack("<I", index), self._flow_cache.value_size) or b""
        found = []
        for cpu in range(len(raw) // FLOW_CACHE_VALUE_SIZE):
            entry = raw[cpu * FLOW_CACHE_VALUE_SIZE : (cpu + 1) * FLOW_CACHE_VALUE_SIZE]
            packets, nbytes = struct.unpack_from("<QQ", entry, FLOW_KEY_SIZE)
            if packets:
                found.append(parse_flow_key(entry[:FLOW_KEY_SIZE], packets, nbytes))
        return found

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
        for m in self._maps:
            os.close(m.fd)
        os.close(self._prog_fd)


_DROP_KEY = struct.Struct("<IIB7x16s")  # struct drop_key
_OVERFLOW_KEY = struct.Struct("<II")  # struct overflow_key
_FLOW_KEY = struct.Struct("<IIBBHH2x16s16s")  # struct flow_key


def parse_flow_key(raw: bytes, packets: int, nbytes: int) -> FlowCount:
    policy, netns, family, proto, sport, dport, saddr, daddr = _FLOW_KEY.unpack(raw)
    return FlowCount(
        policy, netns, proto, format_source(saddr, family), sport, format_source(daddr, family), dport, packets, nbytes
    )


def parse_key(raw: bytes) -> tuple[int, int, int, bytes]:
    """(policy id, netns inode, family, address) of a drop key, or of an overflow key (no family, no address)."""
    if len(raw) == OVERFLOW_KEY_SIZE:
        policy, netns = _OVERFLOW_KEY.unpack(raw)
        return policy, netns, 0, b""
    policy, netns, family, addr = _DROP_KEY.unpack(raw)
    return policy, netns, family, addr
