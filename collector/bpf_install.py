"""Compiles bpf/denied.c with BCC, attaches it to skb:kfree_skb and pins it all under bpffs; then exits.

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
import sys
from pathlib import Path

from collector.bpf_sys import obj_pin

FUNCTION = b"count_drops"


def install(*, source: Path, cflags: list[str], pin_dir: Path, retire: list[Path], flow_logs: bool = False) -> None:
    from bcc import BPF  # Debian's python3-bpfcc; only this process loads it
    from bcc.libbcc import lib

    from collector.bpf_loader import FLOW_MAPS, MAPS

    bpf = BPF(src_file=str(source).encode(), cflags=cflags)
    fn = bpf.load_func(FUNCTION, BPF.RAW_TRACEPOINT)
    pin_dir.mkdir(parents=True, exist_ok=True)
    for name in (*MAPS, *FLOW_MAPS) if flow_logs else MAPS:
        obj_pin(bpf[name.encode()].get_fd(), pin_dir / name)
    obj_pin(fn.fd, pin_dir / "prog")
    zero = ct.c_int(0)
    bpf[b"generation"][zero] = ct.c_uint32(0)
    bpf[b"drops_slot"][zero] = ct.c_int(bpf[b"drops_a"].get_fd())
    bpf[b"overflow_slot"][zero] = ct.c_int(bpf[b"overflow_a"].get_fd())
    if flow_logs:
        bpf[b"flows_slot"][zero] = ct.c_int(bpf[b"flows_a"].get_fd())
        bpf[b"flow_overflow_slot"][zero] = ct.c_int(bpf[b"flow_overflow_a"].get_fd())
    link = lib.bpf_attach_raw_tracepoint(fn.fd, b"kfree_skb")
    if link < 0:
        raise OSError(f"cannot attach {FUNCTION.decode()} to the kfree_skb raw tracepoint (error {link})")
    for old in retire:
        (old / "link").unlink(missing_ok=True)  # detaches the old program: it overlapped this one for microseconds
    obj_pin(link, pin_dir / "link")


def main() -> int:
    """Request on stdin: mark_mask, map_size, overflow_size, bpf_dir. Reply on stdout: pin_dir, reused, retired;
    or error, the one line the agent shows."""
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
    )
    try:
        found = find_or_install(config=config, bpf_dir=Path(request["bpf_dir"]))
    except (LoadError, KernelError, BtfError, OSError) as exc:
        json.dump({"error": str(exc)}, sys.stdout)
        return 1
    json.dump(
        {"pin_dir": str(found.pin_dir), "reused": found.reused, "retired": [str(p) for p in found.retired]}, sys.stdout
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
