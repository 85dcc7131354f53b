"""Compiles bpf/denied.c with BCC, attaches it to skb:kfree_skb and drains its maps.

Draining: point the program at the spare map (a map-in-map update, which waits for running programs), then
read and empty the map it was counting into with batch lookup-and-delete (per key where the kernel lacks batch
ops). Nothing writes the drained map meanwhile, so every counted drop is read exactly once.
"""

from __future__ import annotations

import ctypes as ct
import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bpf import source_path
from collector.btf import Btf
from collector.kernel import SkbLayout, TracepointArgs, check_headers, check_tracepoint, netfilter_drop_reason

log = logging.getLogger(__name__)

PROGRAM_NAME = "raw_tracepoint__kfree_skb"
KEY_SIZE = 32  # struct drop_key
OVERFLOW_KEY_SIZE = 8  # struct overflow_key
VALUE_SIZE = 16  # struct drop_value
FAMILY_INET, FAMILY_INET6 = 4, 6
UNKNOWN_SOURCE = "unknown"


@dataclass(frozen=True)
class DropCount:
    policy_id: int
    src_ip: str
    packets: int
    bytes: int
    netns: int = 0  # inode of the network namespace the drop happened in (0: unknown)


@dataclass(frozen=True)
class Drained:
    """What one drain read: per-source counts, per-policy overflow counts, and map occupancy."""

    drops: list[DropCount] = field(default_factory=list)
    overflow: list[DropCount] = field(default_factory=list)  # src_ip is "overflow"
    unplaced_packets: int = 0
    unplaced_bytes: int = 0
    map_entries: int = 0


class DropSource(Protocol):
    """Where drop counts come from (the BPF program in production, a fake in unit tests)."""

    def drain(self) -> Drained: ...

    def bpf_stats(self) -> tuple[int, int] | None:
        """(run_time_ns, run_count) of the program when kernel.bpf_stats_enabled=1, else None."""
        ...

    def close(self) -> None: ...


class LoadError(RuntimeError):
    """BCC could not compile or the kernel refused the program; one line for the user."""


@dataclass(frozen=True)
class ProgramConfig:
    mark_mask: int
    map_size: int
    overflow_size: int = 4096


def build_cflags(*, config: ProgramConfig, reason: int, layout: SkbLayout, args: TracepointArgs) -> list[str]:
    defines = {
        **args.defines(),
        "NETFILTER_DROP_REASON": reason,
        "MARK_MASK": config.mark_mask,
        "MAP_SIZE": config.map_size,
        "OVERFLOW_SIZE": config.overflow_size,
        **layout.defines(),
    }
    return [f"-D{name}={value:#x}u" if name == "MARK_MASK" else f"-D{name}={value}" for name, value in defines.items()]


def format_source(src_ip_bytes: bytes, family: int) -> str:
    if family == FAMILY_INET:
        return socket.inet_ntop(socket.AF_INET, src_ip_bytes[:4])
    if family == FAMILY_INET6:
        return socket.inet_ntop(socket.AF_INET6, src_ip_bytes)
    return UNKNOWN_SOURCE


def sum_per_cpu(blob: bytes | memoryview, ncpu: int, stride: int) -> tuple[int, int]:
    """Sum the {packets, bytes} of every CPU in one per-CPU value blob (``stride`` bytes per CPU)."""
    packets = total = 0
    for cpu in range(ncpu):
        p, b = struct.unpack_from("<QQ", blob, cpu * stride)
        packets += p
        total += b
    return packets, total


class _BatchReader:
    """Batch lookup-and-delete over one per-CPU hash map into preallocated buffers."""

    def __init__(self, lib: Any, fd: int, *, key_size: int, max_entries: int, ncpu: int) -> None:
        self._lib = lib
        self._fd = fd
        self._key_size = key_size
        self._value_size = VALUE_SIZE * ncpu
        self._max = max_entries
        self._keys = ct.create_string_buffer(key_size * max_entries)
        self._values = ct.create_string_buffer(self._value_size * max_entries)

    def read_and_delete(self) -> tuple[memoryview, memoryview, int] | None:
        """(keys, values, count), or None when the kernel has no batch ops for this map."""
        token = ct.c_uint32(0)
        total = 0
        first = True
        while total < self._max:
            count = ct.c_uint32(self._max - total)
            res = self._lib.bpf_lookup_and_delete_batch(
                self._fd,
                None if first else ct.byref(token),
                ct.byref(token),
                ct.byref(self._keys, self._key_size * total),
                ct.byref(self._values, self._value_size * total),
                ct.byref(count),
            )
            err = ct.get_errno()
            total += count.value
            first = False
            if res == 0:
                if count.value == 0:
                    break
                continue
            if err == errno.ENOENT:
                break
            if total == 0 and err in (errno.EINVAL, errno.ENOTSUP, 524):  # 524 = ENOTSUPP (kernel-internal)
                return None
            raise OSError(err, f"BPF_MAP_LOOKUP_AND_DELETE_BATCH failed: {os.strerror(err)}")
        view_k = memoryview(self._keys.raw)[: self._key_size * total]
        view_v = memoryview(self._values.raw)[: self._value_size * total]
        return view_k, view_v, total


class BpfDropSource:
    """The production DropSource: the BPF program, loaded and attached at construction."""

    def __init__(
        self,
        *,
        config: ProgramConfig,
        btf_path: Path | None = None,
    ) -> None:
        check_tracepoint()
        check_headers()
        btf = Btf.load(btf_path) if btf_path else Btf.load()
        reason = netfilter_drop_reason(btf=btf)
        layout = SkbLayout.from_btf(btf)
        self.cflags = build_cflags(config=config, reason=reason, layout=layout, args=TracepointArgs.from_btf(btf))
        self.source_file = source_path("denied.c")
        from bcc import BPF  # imported late: importing bcc is slow and needs Debian's python3-bpfcc
        from bcc.libbcc import lib
        from bcc.utils import get_possible_cpus

        self._config = config
        self._lib = lib
        try:
            self._bpf = BPF(src_file=str(self.source_file).encode(), cflags=self.cflags)
        except Exception as exc:  # BCC raises bare Exception for compile and load errors
            raise LoadError(f"BPF program {self.source_file} failed to load: {exc}") from exc
        self._ncpu = len(get_possible_cpus())
        self._prog_fd: int = self._bpf.funcs[PROGRAM_NAME.encode()].fd
        self._drops = [self._bpf[b"drops_a"], self._bpf[b"drops_b"]]
        self._overflow = [self._bpf[b"overflow_a"], self._bpf[b"overflow_b"]]
        self._drops_slot = self._bpf[b"drops_slot"]
        self._overflow_slot = self._bpf[b"overflow_slot"]
        self._unplaced = self._bpf[b"unplaced"]
        self._generation = self._bpf[b"generation"]
        self._cache = self._bpf[b"cache"]
        self._active = 0
        self._point_at(0)
        self._readers = [
            [
                _BatchReader(lib, t.get_fd(), key_size=KEY_SIZE, max_entries=config.map_size, ncpu=self._ncpu)
                for t in self._drops
            ],
            [
                _BatchReader(
                    lib, t.get_fd(), key_size=OVERFLOW_KEY_SIZE, max_entries=config.overflow_size, ncpu=self._ncpu
                )
                for t in self._overflow
            ],
        ]
        self._unplaced_seen = (0, 0)
        self._batch_ok = True

    def _point_at(self, index: int) -> None:
        zero = ct.c_int(0)
        # generation first: the slot updates below wait for every program that may still use the old one
        self._generation[zero] = ct.c_uint32(index)
        self._drops_slot[zero] = ct.c_int(self._drops[index].get_fd())
        self._overflow_slot[zero] = ct.c_int(self._overflow[index].get_fd())
        self._active = index

    def drain(self) -> Drained:
        idle = self._active
        self._point_at(1 - idle)  # waits for running programs: the idle maps now have no writer
        drops = [
            DropCount(policy_id=pid, src_ip=format_source(addr, fam), packets=p, bytes=b, netns=ns)
            for (pid, ns, fam, addr), (p, b) in self._read(kind=0, index=idle)
        ]
        map_entries = len(drops)
        drops.extend(self._read_cache(idle))
        overflow = [
            DropCount(policy_id=pid, src_ip="overflow", packets=p, bytes=b, netns=ns)
            for (pid, ns, _fam, _addr), (p, b) in self._read(kind=1, index=idle)
        ]
        total_p = total_b = 0
        for per_cpu in self._unplaced.values():
            for v in per_cpu:
                total_p += v.packets
                total_b += v.bytes
        seen_p, seen_b = self._unplaced_seen
        self._unplaced_seen = (total_p, total_b)
        return Drained(
            drops=drops,
            overflow=overflow,
            unplaced_packets=total_p - seen_p,
            unplaced_bytes=total_b - seen_b,
            map_entries=map_entries,
        )

    def _read_cache(self, index: int) -> list[DropCount]:
        """The per-CPU last-key cache of a generation no program writes any more; emptied after reading."""
        slot = ct.c_int(index)
        found = [
            DropCount(
                policy_id=pid, src_ip=format_source(addr, fam), packets=int(v.packets), bytes=int(v.bytes), netns=ns
            )
            for v in self._cache[slot]
            if v.packets
            for pid, ns, fam, addr in [_parse_key(bytes(v.key))]
        ]
        self._cache[slot] = self._cache.Leaf()
        return found

    def _read(self, *, kind: int, index: int) -> list[tuple[tuple[int, int, int, bytes], tuple[int, int]]]:
        key_size = KEY_SIZE if kind == 0 else OVERFLOW_KEY_SIZE
        stride_v = VALUE_SIZE * self._ncpu
        got = self._readers[kind][index].read_and_delete() if self._batch_ok else None
        out: list[tuple[tuple[int, int, int, bytes], tuple[int, int]]] = []
        if got is None:
            if self._batch_ok:
                log.info("kernel lacks batch map ops; draining key by key")
                self._batch_ok = False
            return self._read_per_key(kind=kind, index=index)
        keys, values, count = got
        for i in range(count):
            out.append(
                (
                    _parse_key(keys[i * key_size : (i + 1) * key_size]),
                    sum_per_cpu(values[i * stride_v : (i + 1) * stride_v], self._ncpu, VALUE_SIZE),
                )
            )
        return out

    def _read_per_key(self, *, kind: int, index: int) -> list[tuple[tuple[int, int, int, bytes], tuple[int, int]]]:
        table = (self._drops if kind == 0 else self._overflow)[index]
        out: list[tuple[tuple[int, int, int, bytes], tuple[int, int]]] = []
        for key in list(table.keys()):
            per_cpu = table[key]
            packets = sum(v.packets for v in per_cpu)
            nbytes = sum(v.bytes for v in per_cpu)
            out.append((_parse_key(bytes(key)), (packets, nbytes)))
            del table[key]
        return out

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
        self._bpf.cleanup()


def _parse_key(raw: bytes | memoryview) -> tuple[int, int, int, bytes]:
    """(policy id, netns inode, family, address) of a drop key, or of an overflow key (no family, no address)."""
    if len(raw) == OVERFLOW_KEY_SIZE:
        policy, netns = struct.unpack("<II", raw)
        return policy, netns, 0, b""
    policy, netns, family = struct.unpack_from("<IIB", raw, 0)
    return policy, netns, family, bytes(raw[16:32])


def read_fdinfo(fd: int, *, proc: Path = Path("/proc/self/fdinfo")) -> dict[str, int]:
    """The integer fields of a BPF object's fdinfo (prog_id, run_time_ns, run_cnt, ...)."""
    try:
        text = (proc / str(fd)).read_text()
    except OSError:
        return {}
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        try:
            fields[name.strip()] = int(value.strip())
        except ValueError:
            continue
    return fields


def read_prog_stats(fd: int, *, proc: Path = Path("/proc/self/fdinfo")) -> tuple[int, int] | None:
    fields = read_fdinfo(fd, proc=proc)
    if "run_time_ns" not in fields or "run_cnt" not in fields:
        return None
    return fields["run_time_ns"], fields["run_cnt"]
