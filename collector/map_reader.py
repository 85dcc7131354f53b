"""Reading and emptying pinned per-CPU hash maps with bpf(2) batch commands, key by key where the kernel lacks them.

Reads go through one small chunk buffer, so userspace memory stays the same whatever --map-size is; per-CPU values
are summed per entry as the chunk arrives.
"""

from __future__ import annotations

import ctypes as ct
import errno
import logging
import os
from pathlib import Path

from collector import bpf_sys
from collector.bpf_loader import FLOW_KEY_SIZE, VALUE_SIZE, sum_entries, sum_per_cpu

log = logging.getLogger(__name__)

CHUNK = 1024  # entries per batch syscall: userspace buffers stay small whatever --map-size is
_NOT_SUPPORTED = (errno.EINVAL, errno.ENOTSUP, 524)  # 524 = ENOTSUPP (kernel-internal)

Entry = tuple[bytes, tuple[int, int]]  # (raw key, (packets, bytes) summed over CPUs)


class PinnedMap:
    """An fd for a pinned map and the sizes of its keys and values (a per-CPU value: all CPUs' slots)."""

    def __init__(self, path: Path, *, key_size: int, value_size: int) -> None:
        self.fd = bpf_sys.obj_get(path)
        self.key_size = key_size
        self.value_size = value_size

    def close(self) -> None:
        os.close(self.fd)


class MapReader:
    """Reads the {packets, bytes} entries of per-CPU hash maps and deletes the keys read."""

    def __init__(self, ncpu: int) -> None:
        self.ncpu = ncpu
        per_cpu = VALUE_SIZE * ncpu
        self._keys = ct.create_string_buffer(FLOW_KEY_SIZE * CHUNK)
        self._values = ct.create_string_buffer(per_cpu * CHUNK)
        self._token = ct.create_string_buffer(8)
        self._next_token = ct.create_string_buffer(8)
        self.batch_ok = True  # False: the kernel lacks batch map ops, maps are read key by key

    def read(self, m: PinnedMap, keys_out: list[bytes]) -> list[Entry]:
        """Every entry of ``m``; each key read is appended to ``keys_out`` (for ``delete``)."""
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

    def _read_batch(self, m: PinnedMap, keys_out: list[bytes]) -> list[Entry]:
        out: list[Entry] = []
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
                sums = sum_entries(ct.string_at(self._values, count * m.value_size), count, self.ncpu)
                for i in range(count):
                    raw = keys[i * m.key_size : (i + 1) * m.key_size]
                    keys_out.append(raw)
                    out.append((raw, sums[i]))
            if done:
                return out

    def _read_per_key(self, m: PinnedMap, keys_out: list[bytes]) -> list[Entry]:
        out: list[Entry] = []
        key = None
        while (key := bpf_sys.next_key(m.fd, key, m.key_size)) is not None:
            value = bpf_sys.lookup(m.fd, key, m.value_size)
            if value is not None:
                keys_out.append(key)
                out.append((key, sum_per_cpu(value, self.ncpu, VALUE_SIZE)))
        return out

    @staticmethod
    def keys(m: PinnedMap) -> list[bytes]:
        """Every key of ``m``, without the values."""
        found = []
        key = None
        while (key := bpf_sys.next_key(m.fd, key, m.key_size)) is not None:
            found.append(key)
        return found

    def delete(self, m: PinnedMap, keys: list[bytes]) -> int:
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
