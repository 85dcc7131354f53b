"""Facts about the running kernel the BPF program needs, each read at start, none hard-coded."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from collector.btf import Btf, BtfError

TRACEFS = Path("/sys/kernel/tracing")
KFREE_SKB_FORMAT = "events/skb/kfree_skb/format"
DROP_REASON = "NETFILTER_DROP"
SKB_MEMBERS = ("dev", "sk", "_skb_refdst", "len", "mark", "head", "network_header", "mac_header", "protocol")


class KernelError(RuntimeError):
    """Something the collector needs from the kernel is missing; the message says what and how to fix it."""


@dataclass(frozen=True)
class SkbLayout:
    """The slice of ``struct sk_buff`` the program copies, and where each member sits inside it."""

    span_start: int
    span_len: int
    offsets: dict[str, int]
    netns: dict[str, int]  # where the namespace inode is, from the device, the socket or the route

    @classmethod
    def from_btf(cls, btf: Btf) -> SkbLayout:
        try:
            fields = {name: btf.struct_member("sk_buff", name) for name in SKB_MEMBERS}
            # possible_net_t is { struct net *net; }: the pointer sits at the member's own offset
            netns = {
                "NETDEV_NET": btf.struct_member("net_device", "nd_net").offset,
                "SOCK_NET": btf.struct_member("sock", "__sk_common").offset
                + btf.struct_member("sock_common", "skc_net").offset,
                "DST_DEV": btf.struct_member("dst_entry", "dev").offset,
                "NET_INUM": btf.struct_member("net", "ns").offset + btf.struct_member("ns_common", "inum").offset,
            }
        except BtfError as exc:
            raise KernelError(str(exc)) from exc
        start = min(f.offset for f in fields.values())
        end = max(f.offset + f.size for f in fields.values())
        return cls(
            span_start=start,
            span_len=end - start,
            offsets={name: f.offset - start for name, f in fields.items()},
            netns=netns,
        )

    def defines(self) -> dict[str, int]:
        return {
            "SPAN_START": self.span_start,
            "SPAN_LEN": self.span_len,
            "OFF_LEN": self.offsets["len"],
            "OFF_MARK": self.offsets["mark"],
            "OFF_HEAD": self.offsets["head"],
            "OFF_NH": self.offsets["network_header"],
            "OFF_PROTOCOL": self.offsets["protocol"],
            "OFF_DEV": self.offsets["dev"],
            "OFF_SK": self.offsets["sk"],
            "OFF_DST": self.offsets["_skb_refdst"],
            "OFF_MAC": self.offsets["mac_header"],
            **self.netns,
        }


@dataclass(frozen=True)
class TracepointArgs:
    """Positions of the skb and the drop reason among the raw ``kfree_skb`` tracepoint's arguments."""

    skb: int
    reason: int

    @classmethod
    def from_btf(cls, btf: Btf) -> TracepointArgs:
        try:
            params = btf.tracepoint_params("kfree_skb")
        except BtfError as exc:
            raise KernelError(str(exc)) from exc
        names = [name for _kind, name in params]
        if "sk_buff" not in names or "skb_drop_reason" not in names:
            raise KernelError(
                f"the kfree_skb tracepoint passes no drop reason on this kernel (arguments: {names}); "
                "linux >= 5.17 is needed"
            )
        return cls(skb=names.index("sk_buff"), reason=names.index("skb_drop_reason"))

    def defines(self) -> dict[str, int]:
        return {"ARG_SKB": self.skb, "ARG_REASON": self.reason}


def drop_reason_from_format(text: str, reason: str = DROP_REASON) -> int | None:
    """The number of ``reason`` in the tracepoint's ``print fmt`` symbol table, or None if it is not listed."""
    match = re.search(r'\{\s*(\d+)\s*,\s*"' + re.escape(reason) + r'"\s*\}', text)
    return int(match.group(1)) if match else None


def netfilter_drop_reason(*, tracefs: Path = TRACEFS, btf: Btf | None = None) -> int:
    """SKB_DROP_REASON_NETFILTER_DROP on this kernel: the tracepoint format first, then BTF."""
    fmt = tracefs / KFREE_SKB_FORMAT
    try:
        value = drop_reason_from_format(fmt.read_text())
    except OSError:
        value = None
    if value is not None:
        return value
    try:
        return (btf or Btf.load()).enum_value("skb_drop_reason", "SKB_DROP_REASON_" + DROP_REASON)
    except BtfError as exc:
        raise KernelError(
            f"this kernel reports no drop reasons on skb:kfree_skb ({fmt} lists no {DROP_REASON} and {exc}); "
            "linux >= 5.17 is needed"
        ) from exc


def check_tracepoint(*, tracefs: Path = TRACEFS) -> None:
    if not (tracefs / "events").is_dir():
        raise KernelError(f"tracefs is not mounted at {tracefs}; fix: mount -t tracefs tracefs {tracefs}")
    if not (tracefs / KFREE_SKB_FORMAT).is_file():
        raise KernelError(f"the kernel has no skb:kfree_skb tracepoint ({tracefs / KFREE_SKB_FORMAT} is missing)")


def check_headers(*, modules: Path = Path("/lib/modules"), release: str | None = None) -> None:
    release = release or os.uname().release
    build = modules / release / "build"
    if not build.exists():
        raise KernelError(
            f"kernel headers missing: BCC needs {build}; fix: apt-get install linux-headers-{release} "
            "(or run scripts/setup, which links Debian's linux-headers-amd64 there; struct layouts come from "
            "BTF, so another version's headers are fine)"
        )


def kernel_release() -> str:
    return os.uname().release
