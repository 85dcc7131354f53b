"""The BPF program's life: installed once and pinned under bpffs, reused across agent restarts.

Its identity is a digest of its C text, the -D flags computed for this kernel and its attach kind; a pin directory
``<bpf dir>/<digest>`` holding a ``link`` pin is that program, attached. A start finds it and reuses it (no compile,
no moment without a program); another program is installed by a short-lived child process
(collector/bpf_install.py, the only place BCC and LLVM are loaded) and replaces the old one, whose maps are drained
once more before their pins go. Draining the pins is collector/pinned_source.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import subprocess
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bpf import source_path
from collector import bpf_sys
from collector.btf import Btf
from collector.kernel import SkbLayout, TracepointArgs, check_headers, check_tracepoint, netfilter_drop_reason

log = logging.getLogger(__name__)

DEFAULT_BPF_DIR = Path("/sys/fs/bpf/policywatch")
# The pinned maps of one program (bpf/denied.c), besides its "prog" and "link" pins.
MAPS = (
    "drops_a",
    "drops_b",
    "drops_slot",
    "overflow_a",
    "overflow_b",
    "overflow_slot",
    "unplaced",
    "generation",
    "cache",
    "inserts",
    "drained",
)
# Only in a program built with --flow-logs (-DFLOW_LOGS).
FLOW_MAPS = (
    "flows_a",
    "flows_b",
    "flows_slot",
    "flow_overflow_a",
    "flow_overflow_b",
    "flow_overflow_slot",
    "flow_unplaced",
    "flow_cache",
)
KEY_SIZE = 32  # struct drop_key
OVERFLOW_KEY_SIZE = 8  # struct overflow_key
VALUE_SIZE = 16  # struct drop_value
FLOW_KEY_SIZE = 48  # struct flow_key
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
class FlowCount:
    """One denied flow's counts in one drain; for ICMP the ports hold type and code. An overflow count (the flow
    map was full) has proto 0, no addresses and no ports."""

    policy_id: int
    netns: int
    proto: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    packets: int
    bytes: int
    overflow: bool = False


@dataclass(frozen=True)
class Drained:
    """What one drain read: per-source counts, per-policy overflow counts, and map occupancy."""

    drops: list[DropCount] = field(default_factory=list)
    overflow: list[DropCount] = field(default_factory=list)  # src_ip is "overflow"
    unplaced_packets: int = 0
    unplaced_bytes: int = 0
    map_entries: int = 0
    flows: list[FlowCount] = field(default_factory=list)  # empty unless the program counts flows (--flow-logs)
    flow_unplaced_packets: int = 0
    flow_unplaced_bytes: int = 0


class DropSource(Protocol):
    """Where drop counts come from (the BPF program in production, a fake in unit tests)."""

    def drain(self) -> Drained:
        """Swap maps and read the idle ones; nothing is deleted before ``commit()``."""
        ...

    def commit(self) -> None:
        """Empty what the last ``drain()`` read (called once its counts are added and persisted)."""
        ...

    def bpf_stats(self) -> tuple[int, int] | None:
        """(run_time_ns, run_count) of the program when kernel.bpf_stats_enabled=1, else None."""
        ...

    def close(self) -> None: ...


class LoadError(RuntimeError):
    """BCC could not compile or the kernel refused the program; one line for the user."""


# How the program is attached to kfree_skb. tp_btf: a BTF-enabled tracepoint (BPF_PROG_TYPE_TRACING, attach type
# BPF_TRACE_RAW_TP), reading the skb with plain loads the verifier checks against BTF; raw_tp: a raw tracepoint
# program reading it with bpf_probe_read_kernel. "auto" is tp_btf unless the kernel refuses it.
ATTACH_KINDS = ("tp_btf", "raw_tp")
ATTACH_CHOICES = ("auto", *ATTACH_KINDS)


@dataclass(frozen=True)
class ProgramConfig:
    mark_mask: int
    map_size: int
    overflow_size: int = 4096
    flow_logs: bool = False
    flow_map_size: int = 16384
    attach: str = "auto"  # one of ATTACH_CHOICES


def build_cflags(
    *, config: ProgramConfig, reason: int, layout: SkbLayout, args: TracepointArgs, attach: str = "tp_btf"
) -> list[str]:
    defines = {
        **args.defines(),
        "NETFILTER_DROP_REASON": reason,
        "MARK_MASK": config.mark_mask,
        "MAP_SIZE": config.map_size,
        "OVERFLOW_SIZE": config.overflow_size,
        **layout.defines(),
    }
    if config.flow_logs:
        defines |= {"FLOW_LOGS": 1, "FLOW_MAP_SIZE": config.flow_map_size}
    if attach == "tp_btf":
        defines["TP_BTF"] = 1
    return [f"-D{name}={value:#x}u" if name == "MARK_MASK" else f"-D{name}={value}" for name, value in defines.items()]


def format_source(src_ip_bytes: bytes, family: int) -> str:
    if family == FAMILY_INET:
        return socket.inet_ntop(socket.AF_INET, src_ip_bytes[:4])
    if family == FAMILY_INET6:
        return socket.inet_ntop(socket.AF_INET6, src_ip_bytes)
    return UNKNOWN_SOURCE


def sum_per_cpu(blob: bytes | memoryview, ncpu: int, stride: int) -> tuple[int, int]:
    """Sum the {packets, bytes} of every CPU in one per-CPU value blob (``stride`` bytes per CPU)."""
    words = array("Q", bytes(blob[: ncpu * stride]))
    step = stride // 8
    return sum(words[0::step]), sum(words[1::step])


def sum_entries(values: bytes, count: int, ncpu: int) -> list[tuple[int, int]]:
    """Per entry, {packets, bytes} summed over CPUs, for ``count`` per-CPU values of VALUE_SIZE bytes per CPU.

    Array slices sum in C: no per-CPU Python loop, so a 128-CPU node costs two slices per entry.
    """
    words = array("Q", values[: count * ncpu * VALUE_SIZE])
    width = 2 * ncpu
    return [
        (sum(words[i * width : (i + 1) * width : 2]), sum(words[i * width + 1 : (i + 1) * width : 2]))
        for i in range(count)
    ]


def program_digest(source: bytes, cflags: list[str], attach: str) -> str:
    """Identity of a compiled program: its C text, its -D flags (which hold every kernel offset) and its attach
    kind, so that a program of another kind is installed in place of a pinned one, never mistaken for it."""
    return hashlib.sha256(source + b"\0" + "\0".join([*cflags, attach]).encode()).hexdigest()[:16]


def ensure_bpffs(bpf_dir: Path) -> None:
    """bpffs mounted at ``bpf_dir``'s parent (mounted here if it is not, as bpftool does); ``bpf_dir`` in it."""
    root = bpf_dir.parent
    if not bpf_sys.is_bpffs(root):
        try:
            bpf_sys.mount_bpffs(root)
        except OSError as exc:
            raise LoadError(
                f"{root} is not bpffs and mounting it failed ({exc}); fix: mount -t bpf bpf {root}"
            ) from exc
    bpf_dir.mkdir(exist_ok=True)


def remove_pins(pin_dir: Path) -> None:
    """Unpin a program directory: the link first (detaching the program), then its maps."""
    for name in ("link", "prog", *MAPS, *FLOW_MAPS):
        (pin_dir / name).unlink(missing_ok=True)
    for leftover in pin_dir.glob("*"):
        leftover.unlink(missing_ok=True)
    try:
        pin_dir.rmdir()
    except OSError:
        pass


@dataclass(frozen=True)
class Installed:
    pin_dir: Path
    reused: bool
    retired: tuple[Path, ...] = ()  # replaced programs: detached, their maps still pinned for a last drain
    attach: str = "tp_btf"  # the kind it is attached as (ATTACH_KINDS)
    fallback: str = ""  # with --bpf-attach auto: why tp_btf was not used (the kernel's refusal), else empty


def program_cflags(config: ProgramConfig, *, btf: Btf, attach: str) -> list[str]:
    return build_cflags(
        config=config,
        reason=netfilter_drop_reason(btf=btf),
        layout=SkbLayout.from_btf(btf),
        args=TracepointArgs.from_btf(btf),
        attach=attach,
    )


def ensure_installed(*, config: ProgramConfig, bpf_dir: Path = DEFAULT_BPF_DIR) -> Installed:
    """The pinned program for this configuration and kernel, found or installed by a short-lived child process.

    Everything heavy happens in the child: parsing the kernel's BTF (some 60 MB of Python objects) and, when the
    program is not pinned yet, BCC and LLVM; so none of it stays resident in the agent."""
    request = {
        "mark_mask": config.mark_mask,
        "map_size": config.map_size,
        "overflow_size": config.overflow_size,
        "flow_logs": config.flow_logs,
        "flow_map_size": config.flow_map_size,
        "attach": config.attach,
        "bpf_dir": str(bpf_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "collector.bpf_install"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        reply = {"error": done.stderr.strip() or f"the installer exited {done.returncode}"}
    if done.returncode != 0 or "error" in reply:
        raise LoadError(str(reply.get("error")))
    return Installed(
        pin_dir=Path(reply["pin_dir"]),
        reused=bool(reply["reused"]),
        retired=tuple(Path(p) for p in reply["retired"]),
        attach=str(reply["attach"]),
        fallback=str(reply.get("fallback", "")),
    )


def find_or_install(
    *,
    config: ProgramConfig,
    bpf_dir: Path,
    btf_path: Path | None = None,
    tp_btf_supported: Callable[[int], bool] | None = None,
) -> Installed:
    """The installer child's work (collector/bpf_install.py): reuse the pinned program, or compile and pin it.

    ``--bpf-attach auto`` reuses a pinned tp_btf program, or a pinned raw_tp one on a kernel that refuses tp_btf
    programs (``tp_btf_supported``: by default, whether an empty tp_btf program loads); otherwise it installs
    tp_btf and falls back to raw_tp when the kernel refuses the program."""
    from collector import bpf_install

    supported = tp_btf_supported or bpf_install.tp_btf_supported

    check_tracepoint()
    btf = Btf.load(btf_path) if btf_path else Btf.load()
    source = source_path("denied.c")
    text = source.read_bytes()
    kinds = ATTACH_KINDS if config.attach == "auto" else (config.attach,)
    cflags = {kind: program_cflags(config, btf=btf, attach=kind) for kind in kinds}
    pin_dirs = {kind: bpf_dir / program_digest(text, cflags[kind], kind) for kind in kinds}
    ensure_bpffs(bpf_dir)
    btf_id = btf.tracepoint_type_id("kfree_skb")
    if config.attach == "auto" and not (pin_dirs["tp_btf"] / "link").exists() and not supported(btf_id):
        kinds = ("raw_tp",)  # not even an empty tp_btf program loads here: compile nothing that needs it
        fallback = "the kernel refuses tp_btf programs (an empty one does not load)"
    else:
        fallback = ""
    for kind in kinds:
        if (pin_dirs[kind] / "link").exists():
            return Installed(pin_dir=pin_dirs[kind], reused=True, attach=kind, fallback=fallback)
        try:
            others = _install_kind(
                source, cflags[kind], pin_dir=pin_dirs[kind], config=config, kind=kind, btf_id=btf_id
            )
        except bpf_sys.VerifierError as exc:
            if config.attach == "auto" and kind == "tp_btf":
                fallback = f"the kernel refused the tp_btf program ({one_line(exc, 500)})"
                continue
            raise LoadError(
                f"the kernel refused {source} as {kind}: {one_line(exc)}; --bpf-attach auto falls back to raw_tp"
            ) from exc
        return Installed(pin_dir=pin_dirs[kind], reused=False, retired=others, attach=kind, fallback=fallback)
    raise LoadError(f"no BPF program could be attached to kfree_skb ({fallback})")


def _install_kind(
    source: Path, cflags: list[str], *, pin_dir: Path, config: ProgramConfig, kind: str, btf_id: int
) -> tuple[Path, ...]:
    """Compile, load, pin and attach the program as ``kind``, retiring the other pinned programs; returns those.

    A verifier refusal leaves nothing behind and is raised as is (the caller may fall back to another kind)."""
    from collector.bpf_install import install

    check_headers()
    if pin_dir.exists():
        remove_pins(pin_dir)  # an install that died midway
    bpf_dir = pin_dir.parent
    others = tuple(d for d in sorted(bpf_dir.iterdir()) if d.is_dir() and d != pin_dir)
    try:
        install(
            source=source,
            cflags=cflags,
            pin_dir=pin_dir,
            retire=list(others),
            flow_logs=config.flow_logs,
            attach=kind,
            attach_btf_id=btf_id,
        )
    except bpf_sys.VerifierError:
        remove_pins(pin_dir)
        raise
    except Exception as exc:  # BCC raises bare Exception for compile and load errors
        if not (pin_dir / "link").exists():
            remove_pins(pin_dir)
        raise LoadError(f"BPF program {source} failed to load: {one_line(exc)}") from exc
    return others


def one_line(exc: BaseException, limit: int = 2000) -> str:
    """An exception's text on one line (the kernel's verifier log spans many), at most ``limit`` characters."""
    return " ".join(str(exc).split())[:limit]


def uninstall(bpf_dir: Path = DEFAULT_BPF_DIR) -> list[Path]:
    """Detach and unpin every program under ``bpf_dir``; return the directories removed."""
    removed = []
    if bpf_dir.is_dir():
        for pin_dir in sorted(bpf_dir.iterdir()):
            if pin_dir.is_dir():
                remove_pins(pin_dir)
                removed.append(pin_dir)
        try:
            bpf_dir.rmdir()
        except OSError:
            pass
    return removed


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
