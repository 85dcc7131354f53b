"""BTF reading, checked against bpftool's own dump of the running kernel's BTF."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.btf import VMLINUX_BTF, Btf, BtfError
from collector.kernel import (
    KFREE_SKB_FORMAT,
    TRACEFS,
    KernelError,
    SkbLayout,
    check_headers,
    drop_reason_from_format,
    netfilter_drop_reason,
)

needs_btf = pytest.mark.skipif(not VMLINUX_BTF.exists(), reason="kernel has no /sys/kernel/btf/vmlinux")


def bpftool_offsets(members: tuple[str, ...]) -> dict[str, int]:
    """Byte offsets of sk_buff members per bpftool (an independent reading), looking through anonymous members."""
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", str(VMLINUX_BTF), "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    types: dict[int, tuple[str, list[tuple[str, int, int]]]] = {}
    current: list[tuple[str, int, int]] | None = None
    for line in out.splitlines():
        head = re.match(r"\[(\d+)\] (\w+) '([^']*)'", line)
        if head:
            current = []
            types[int(head.group(1))] = (f"{head.group(2)} {head.group(3)}", current)
            continue
        member = re.match(r"\s+'([^']*)' type_id=(\d+) bits_offset=(\d+)", line)
        if member and current is not None:
            current.append((member.group(1), int(member.group(2)), int(member.group(3))))
    sk_buff = next(tid for tid, (name, _) in types.items() if name == "STRUCT sk_buff")
    found: dict[str, int] = {}

    def walk(tid: int, base: int) -> None:
        for name, mtype, bits in types.get(tid, ("", []))[1]:
            if name in members and name not in found:
                found[name] = (base + bits) // 8
            elif name == "(anon)":
                walk(mtype, base + bits)

    walk(sk_buff, 0)
    return found


@needs_btf
@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed (scripts/setup installs it)")
def test_sk_buff_offsets_agree_with_bpftool() -> None:
    layout = SkbLayout.from_btf(Btf.load())
    members = ("dev", "sk", "_skb_refdst", "len", "mark", "head", "network_header", "mac_header", "protocol")
    expected = bpftool_offsets(members)
    assert set(expected) == set(members)
    assert {m: layout.span_start + layout.offsets[m] for m in members} == expected
    assert layout.span_len <= 256  # one small read on the hot path


@needs_btf
def test_netfilter_drop_reason_agrees_between_format_file_and_btf() -> None:
    btf = Btf.load()
    from_btf = btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_NETFILTER_DROP")
    from_format = drop_reason_from_format((TRACEFS / KFREE_SKB_FORMAT).read_text())
    assert from_format == from_btf == netfilter_drop_reason(btf=btf)


def test_reason_from_format_text_and_btf_fallback(tmp_path: Path) -> None:
    text = 'print fmt: "...", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 7, "NETFILTER_DROP" })'
    assert drop_reason_from_format(text) == 7
    assert drop_reason_from_format(text.replace("NETFILTER_DROP", "OTHER")) is None
    with pytest.raises(KernelError, match="no drop reasons"):
        netfilter_drop_reason(tracefs=tmp_path, btf=Btf.parse(_tiny_btf()))


def test_bad_blob_and_missing_members() -> None:
    with pytest.raises(BtfError, match="bad BTF magic"):
        Btf.parse(b"\0" * 32)
    btf = Btf.parse(_tiny_btf())
    with pytest.raises(BtfError, match="no struct sk_buff"):
        btf.struct_member("sk_buff", "len")


def test_missing_headers_message_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match=r"kernel headers missing.*apt-get install linux-headers-9.9-test"):
        check_headers(modules=tmp_path, release="9.9-test")


def _tiny_btf() -> bytes:
    """A valid BTF blob with one int type and nothing else."""
    import struct

    strings = b"\0int\0"
    types = struct.pack("<3I", 1, 1 << 24, 4) + struct.pack("<I", 32)
    header = struct.pack("<HBBI4I", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_tracefs_and_tracepoint_checks_name_the_fix(tmp_path: Path) -> None:
    from collector.kernel import check_tracepoint

    with pytest.raises(KernelError, match=f"tracefs is not mounted at {tmp_path}; fix: mount -t tracefs"):
        check_tracepoint(tracefs=tmp_path)
    (tmp_path / "events").mkdir()
    with pytest.raises(KernelError, match="no skb:kfree_skb tracepoint"):
        check_tracepoint(tracefs=tmp_path)


@needs_btf
def test_raw_tracepoint_argument_positions_from_btf() -> None:
    from collector.kernel import TracepointArgs

    args = TracepointArgs.from_btf(Btf.load())
    assert args.skb == 0  # kfree_skb(skb, location, reason[, rx_sk]) on every kernel with drop reasons
    assert args.reason == 2
