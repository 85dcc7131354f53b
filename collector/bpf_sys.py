"""The few bpf(2) commands the agent needs on pinned maps, called through ctypes: no BCC, no LLVM in the agent.

BCC (and LLVM with it) is loaded only by the short-lived install process (collector/bpf_install.py) that
compiles the program, attaches it and pins it under bpffs; the agent opens those pins and drains the maps here.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import platform
from pathlib import Path

_SYSCALL = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long

MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 1, 2, 3, 4
PROG_LOAD, OBJ_PIN, OBJ_GET, RAW_TRACEPOINT_OPEN = 5, 6, 7, 17
PROG_TYPE_TRACING, TRACE_RAW_TP = 26, 23  # enum bpf_prog_type, enum bpf_attach_type
MAP_LOOKUP_BATCH, MAP_DELETE_BATCH = 24, 27
BPFFS_MAGIC = 0xCAFE4A11


class _ElemAttr(ct.Structure):
    _fields_ = [("map_fd", ct.c_uint32), ("pad", ct.c_uint32), ("key", ct.c_uint64), ("value", ct.c_uint64),
                ("flags", ct.c_uint64)]  # fmt: skip


class _ObjAttr(ct.Structure):
    _fields_ = [("pathname", ct.c_uint64), ("bpf_fd", ct.c_uint32), ("file_flags", ct.c_uint32)]


class _BatchAttr(ct.Structure):
    _fields_ = [("in_batch", ct.c_uint64), ("out_batch", ct.c_uint64), ("keys", ct.c_uint64),
                ("values", ct.c_uint64), ("count", ct.c_uint32), ("map_fd", ct.c_uint32),
                ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64)]  # fmt: skip


class _ProgLoadAttr(ct.Structure):
    _fields_ = [("prog_type", ct.c_uint32), ("insn_cnt", ct.c_uint32), ("insns", ct.c_uint64),
                ("license", ct.c_uint64), ("log_level", ct.c_uint32), ("log_size", ct.c_uint32),
                ("log_buf", ct.c_uint64), ("kern_version", ct.c_uint32), ("prog_flags", ct.c_uint32),
                ("prog_name", ct.c_char * 16), ("prog_ifindex", ct.c_uint32), ("expected_attach_type", ct.c_uint32),
                ("prog_btf_fd", ct.c_uint32), ("func_info_rec_size", ct.c_uint32), ("func_info", ct.c_uint64),
                ("func_info_cnt", ct.c_uint32), ("line_info_rec_size", ct.c_uint32), ("line_info", ct.c_uint64),
                ("line_info_cnt", ct.c_uint32), ("attach_btf_id", ct.c_uint32),
                ("attach_prog_fd", ct.c_uint32)]  # fmt: skip


class _RawTracepointAttr(ct.Structure):
    _fields_ = [("name", ct.c_uint64), ("prog_fd", ct.c_uint32), ("pad", ct.c_uint32), ("cookie", ct.c_uint64)]


def _bpf(cmd: int, attr: ct.Structure) -> int:
    number = _SYSCALL.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"bpf(2) syscall number unknown on {platform.machine()}")
    result = int(_libc.syscall(number, cmd, ct.byref(attr), ct.sizeof(attr)))
    if result < 0:
        err = ct.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _addr(buf: ct.Array[ct.c_char] | None) -> int:
    return ct.addressof(buf) if buf is not None else 0


def obj_get(path: Path) -> int:
    """An fd for the map, program or link pinned at ``path``."""
    name = ct.create_string_buffer(str(path).encode())
    return _bpf(OBJ_GET, _ObjAttr(pathname=ct.addressof(name)))


def obj_pin(fd: int, path: Path) -> None:
    name = ct.create_string_buffer(str(path).encode())
    _bpf(OBJ_PIN, _ObjAttr(pathname=ct.addressof(name), bpf_fd=fd))


class VerifierError(OSError):
    """The kernel refused a program; ``log`` is the end of the verifier's log."""

    def __init__(self, err: int, log: str) -> None:
        super().__init__(err, f"{os.strerror(err)}: {log}" if log else os.strerror(err))
        self.log = log


def load_tracing(insns: bytes, *, attach_btf_id: int, name: str, license_: str = "GPL") -> int:
    """Load ``insns`` as a BTF-enabled tracepoint program (tp_btf: BPF_PROG_TYPE_TRACING, attach type
    BPF_TRACE_RAW_TP) for the ``btf_trace_<tracepoint>`` typedef ``attach_btf_id`` of the kernel's BTF."""
    code = ct.create_string_buffer(insns, len(insns))
    lic = ct.create_string_buffer(license_.encode())
    log = ct.create_string_buffer(1 << 16)
    attr = _ProgLoadAttr(
        prog_type=PROG_TYPE_TRACING,
        insn_cnt=len(insns) // 8,
        insns=ct.addressof(code),
        license=ct.addressof(lic),
        prog_name=name.encode()[:15],
        expected_attach_type=TRACE_RAW_TP,
        attach_btf_id=attach_btf_id,
    )
    try:
        return _bpf(PROG_LOAD, attr)
    except OSError as exc:
        first_errno = exc.errno
    # again with the verifier's log, only to say why (a log makes a successful load slower)
    attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ct.addressof(log)
    try:
        return _bpf(PROG_LOAD, attr)
    except OSError as again:
        lines = [line for line in log.value.decode(errors="replace").splitlines() if line.strip()]
        raise VerifierError(again.errno or first_errno or errno.EINVAL, " | ".join(lines[-3:])) from None


def raw_tracepoint_open(prog_fd: int, tracepoint: str | None) -> int:
    """Attach a program to a tracepoint; the link's fd. ``None`` for a tp_btf program, whose tracepoint was
    named at load (attach_btf_id)."""
    name = ct.create_string_buffer(tracepoint.encode()) if tracepoint is not None else None
    return _bpf(RAW_TRACEPOINT_OPEN, _RawTracepointAttr(name=_addr(name), prog_fd=prog_fd))


def lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    k = ct.create_string_buffer(key, len(key))
    v = ct.create_string_buffer(value_size)
    try:
        _bpf(MAP_LOOKUP_ELEM, _ElemAttr(map_fd=fd, key=_addr(k), value=_addr(v)))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def update(fd: int, key: bytes, value: bytes) -> None:
    k = ct.create_string_buffer(key, len(key))
    v = ct.create_string_buffer(value, len(value))
    _bpf(MAP_UPDATE_ELEM, _ElemAttr(map_fd=fd, key=_addr(k), value=_addr(v)))


def delete(fd: int, key: bytes) -> bool:
    k = ct.create_string_buffer(key, len(key))
    try:
        _bpf(MAP_DELETE_ELEM, _ElemAttr(map_fd=fd, key=_addr(k)))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    k = ct.create_string_buffer(key, key_size) if key is not None else None
    out = ct.create_string_buffer(key_size)
    try:
        _bpf(MAP_GET_NEXT_KEY, _ElemAttr(map_fd=fd, key=_addr(k), value=_addr(out)))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return out.raw


def lookup_batch(
    fd: int,
    *,
    token: ct.Array[ct.c_char] | None,
    next_token: ct.Array[ct.c_char],
    keys: ct.Array[ct.c_char],
    values: ct.Array[ct.c_char],
    count: int,
) -> tuple[int, bool]:
    """(entries read into ``keys``/``values``, whether the map is exhausted). ENOTSUP etc. raise."""
    attr = _BatchAttr(
        in_batch=_addr(token),
        out_batch=_addr(next_token),
        keys=_addr(keys),
        values=_addr(values),
        count=count,
        map_fd=fd,
    )
    try:
        _bpf(MAP_LOOKUP_BATCH, attr)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return int(attr.count), True
        raise
    return int(attr.count), False


def delete_batch(fd: int, keys: ct.Array[ct.c_char], count: int) -> int:
    attr = _BatchAttr(keys=_addr(keys), count=count, map_fd=fd)
    try:
        _bpf(MAP_DELETE_BATCH, attr)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    return int(attr.count)


def possible_cpus(path: Path = Path("/sys/devices/system/cpu/possible")) -> int:
    """How many per-CPU slots a per-CPU map value has (``0-127`` -> 128)."""
    total = 0
    for part in path.read_text().strip().split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def is_bpffs(path: Path) -> bool:
    class _Statfs(ct.Structure):
        _fields_ = [("f_type", ct.c_long), ("rest", ct.c_byte * 120)]

    buf = _Statfs()
    if _libc.statfs(str(path).encode(), ct.byref(buf)) != 0:
        return False
    return bool((int(buf.f_type) & 0xFFFFFFFF) == BPFFS_MAGIC)


def mount_bpffs(path: Path) -> None:
    """Mount bpffs at ``path`` (as bpftool and Cilium do) when nothing is mounted there yet."""
    path.mkdir(parents=True, exist_ok=True)
    if _libc.mount(b"bpf", str(path).encode(), b"bpf", 0, None) != 0:
        err = ct.get_errno()
        raise OSError(err, f"mount -t bpf bpf {path}: {os.strerror(err)}")
