"""Compiles bpf/denied.c with BCC, attaches it to skb:kfree_skb and pins it all under bpffs; then exits.

As tp_btf, BCC only compiles: the instructions are loaded here with bpf(2) (BCC 0.26 cannot name a tp_btf
attach point), as BPF_PROG_TYPE_TRACING with attach type BPF_TRACE_RAW_TP and the kernel BTF's
``btf_trace_kfree_skb`` as attach_btf_id. As raw_tp, BCC loads it.

Run as a short-lived child of the agent (``python -m collector.bpf_install``, a JSON request on stdin), so that
neither the parsed kernel BTF nor BCC and LLVM are ever resident in the agent; a start whose program is already
pinned compiles nothing. The pins keep the program attached and its maps counting after
this process exits, and across agent restarts; only ``policywatch-collector --uninstall`` (or a changed program)
removes them.

Order: maps are pinned, the map-in-map slots filled, then the program attached and its link pinned last, so a
directory with a ``link`` pin is complete. Programs being replaced are detached right after the new one attaches.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import sys
from pathlib import Path

from collector.bpf_sys import load_tracing, obj_pin, raw_tracepoint_open

FUNCTION = b"count_drops"
# r0 = 0; exit: the smallest tp_btf program, to learn whether the kernel takes tp_btf programs at all
_EMPTY_PROGRAM = bytes.fromhex("b700000000000000") + bytes.fromhex("9500000000000000")


def tp_btf_supported(attach_btf_id: int) -> bool:
    try:
        fd = load_tracing(_EMPTY_PROGRAM, attach_btf_id=attach_btf_id, name="pw_probe")
    except OSError:
        return False
    os.close(fd)
    return True


def install(
    *,
    source: Path,
    cflags: list[str],
    pin_dir: Path,
    retire: list[Path],
    flow_logs: bool = False,
    attach: str = "tp_btf",
    attach_btf_id: int = 0,
) -> None:
    from bcc import BPF  # Debian's python3-bpfcc; only this process loads it
    from bcc.libbcc import lib

    from collector.bpf_loader import FLOW_MAPS, MAPS

    bpf = BPF(src_file=str(source).encode(), cflags=cflags)
    own_fds: list[int] = []  # closed at the end, so that only the pins hold the program and its link
    try:
        if attach == "tp_btf":
            start, size = lib.bpf_function_start(bpf.module, FUNCTION), lib.bpf_function_size(bpf.module, FUNCTION)
            license_ = (lib.bpf_module_license(bpf.module) or b"GPL").decode()
            prog_fd = load_tracing(
                ct.string_at(start, size), attach_btf_id=attach_btf_id, name=FUNCTION.decode(), license_=license_
            )
            own_fds.append(prog_fd)
        else:
            prog_fd = bpf.load_func(FUNCTION, BPF.RAW_TRACEPOINT).fd
        pin_dir.mkdir(parents=True, exist_ok=True)
        for name in (*MAPS, *FLOW_MAPS) if flow_logs else MAPS:
            obj_pin(bpf[name.encode()].get_fd(), pin_dir / name)
        obj_pin(prog_fd, pin_dir / "prog")
        zero = ct.c_int(0)
        bpf[b"generation"][zero] = ct.c_uint32(0)
        bpf[b"drops_slot"][zero] = ct.c_int(bpf[b"drops_a"].get_fd())
        bpf[b"overflow_slot"][zero] = ct.c_int(bpf[b"overflow_a"].get_fd())
        if flow_logs:
            bpf[b"flows_slot"][zero] = ct.c_int(bpf[b"flows_a"].get_fd())
            bpf[b"flow_overflow_slot"][zero] = ct.c_int(bpf[b"flow_overflow_a"].get_fd())
        # a tp_btf program's tracepoint was named at load (attach_btf_id)
        link = raw_tracepoint_open(prog_fd, None if attach == "tp_btf" else "kfree_skb")
        own_fds.append(link)
        for old in retire:
            (old / "link").unlink(missing_ok=True)  # detaches the old program: it overlapped this one briefly
        obj_pin(link, pin_dir / "link")
    finally:
        for fd in own_fds:
            os.close(fd)
        bpf.cleanup()


def main() -> int:
    """Request on stdin: mark_mask, map_size, overflow_size, flow_logs, flow_map_size, attach, bpf_dir. Reply on
    stdout: pin_dir, reused, retired, attach, fallback; or error, the one line the agent shows."""
    from collector.bpf_loader import LoadError, ProgramConfig, find_or_install
    from collector.btf import BtfError
    from collector.kernel import KernelError

    request = json.load(sys.stdin)
    config = ProgramConfig(
        mark_mask=int(request["mark_mask"]),
        map_size=int(request["map_size"]),
        overflow_size=int(request["overflow_size"]),
        flow_logs=bool(request.get("flow_logs", False)),
        flow_map_size=int(request.get("flow_map_size", 16384)),
        attach=str(request.get("attach", "auto")),
    )
    try:
        found = find_or_install(config=config, bpf_dir=Path(request["bpf_dir"]))
    except (LoadError, KernelError, BtfError, OSError) as exc:
        json.dump({"error": str(exc)}, sys.stdout)
        return 1
    reply = {"pin_dir": str(found.pin_dir), "reused": found.reused, "retired": [str(p) for p in found.retired]}
    json.dump(reply | {"attach": found.attach, "fallback": found.fallback}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
