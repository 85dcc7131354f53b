"""How the program is attached (--bpf-attach tp_btf | raw_tp | auto), on the real kernel.

tp_btf reads the skb with plain loads the verifier checks against BTF; raw_tp reads it with helpers. The kind is
part of the pinned program's identity: the same kind is reused across starts, another kind replaces it, and the
replaced program's counts are drained, not lost.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from collector import bpf_sys
from collector.bpf_install import tp_btf_supported
from collector.bpf_loader import ProgramConfig, find_or_install
from collector.btf import Btf
from collector.pinned_source import PinnedDropSource
from devstack.netns import Netns
from tests.collector.harness import V4_DST, V4_SRC, pair, send, tagged_drop

pytestmark = pytest.mark.root


def program_type(pin_dir: Path) -> str:
    """The kernel's name of the pinned program's type ("tracing" for tp_btf, "raw_tracepoint" for raw_tp)."""
    shown = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "pinned", str(pin_dir / "prog")],
                                      capture_output=True, text=True, check=True).stdout)  # fmt: skip
    return str(shown["type"])


def kfree_skb_btf_id() -> int:
    return Btf.load().tracepoint_type_id("kfree_skb")


def test_the_kernel_is_probed_for_tp_btf_by_loading_an_empty_program() -> None:
    assert tp_btf_supported(kfree_skb_btf_id())  # 6.x kernels with BTF take tp_btf programs
    struct_id = Btf.load()._by_name[(4, "sk_buff")]  # a struct, no tracepoint: the kernel refuses it
    assert not tp_btf_supported(struct_id)


def test_a_refused_tp_btf_program_says_why_from_the_verifier() -> None:
    # r0 = *(u64 *)(r1 + 800): far past the tracepoint's arguments
    past_the_arguments = bytes.fromhex("7910200300000000") + bytes.fromhex("b700000000000000")
    with pytest.raises(bpf_sys.VerifierError) as refused:
        bpf_sys.load_tracing(
            past_the_arguments + bytes.fromhex("9500000000000000"), attach_btf_id=kfree_skb_btf_id(), name="pw_bad"
        )
    assert refused.value.log  # the verifier's own words, shown in the agent's one-line error


def test_pinned_program_is_reused_by_kind_and_replaced_by_another_kind(
    netns: Netns, collector_dirs: tuple[Path, Path]
) -> None:
    bpf_dir, _ = collector_dirs
    sender, receiver = pair(netns)
    tagged_drop(netns, receiver, port=7001, mark=0x2A1, policy="kind", family="ip")

    def install(attach: str) -> tuple[Path, bool, tuple[Path, ...], str]:
        got = find_or_install(config=ProgramConfig(mark_mask=0x3FFF, map_size=256, attach=attach), bpf_dir=bpf_dir)
        return got.pin_dir, got.reused, got.retired, got.attach

    tp_dir, reused, retired, kind = install("tp_btf")
    assert (reused, retired, kind, program_type(tp_dir)) == (False, (), "tp_btf", "tracing")
    assert install("tp_btf") == (tp_dir, True, (), "tp_btf")
    assert install("auto") == (tp_dir, True, (), "tp_btf")  # auto reuses the tp_btf program

    send(netns, sender, V4_DST, 7001, 4, 10)  # counted by the tp_btf program
    raw_dir, reused, retired, kind = install("raw_tp")  # another kind: a new program replaces the pinned one
    assert raw_dir != tp_dir and (reused, retired, kind) == (False, (tp_dir,), "raw_tp")
    assert program_type(raw_dir) == "raw_tracepoint"
    assert not (tp_dir / "link").exists()  # detached; its maps stay pinned for the agent's last drain
    send(netns, sender, V4_DST, 7001, 3, 10)  # counted by the raw_tp program only

    def counted(pin_dir: Path) -> int:
        source = PinnedDropSource(pin_dir)
        try:
            total = 0
            for _ in range(2):  # both generations
                drained = source.drain()
                total += sum(d.packets for d in drained.drops if d.src_ip == V4_SRC and d.policy_id == 0x2A1)
                source.commit()
            return total
        finally:
            source.close()

    assert (counted(tp_dir), counted(raw_dir)) == (4, 3)
    assert install("raw_tp") == (raw_dir, True, (), "raw_tp")


def test_auto_falls_back_to_raw_tp_where_the_kernel_refuses_tp_btf(collector_dirs: tuple[Path, Path]) -> None:
    bpf_dir, _ = collector_dirs
    config = ProgramConfig(mark_mask=0x3FFF, map_size=256, attach="auto")
    refused = find_or_install(config=config, bpf_dir=bpf_dir, tp_btf_supported=lambda _id: False)
    assert (refused.attach, refused.reused) == ("raw_tp", False)
    assert "refuses tp_btf" in refused.fallback
    assert program_type(refused.pin_dir) == "raw_tracepoint"
    # the next start on that kernel reuses the raw_tp program: no compile, no moment without a program
    again = find_or_install(config=config, bpf_dir=bpf_dir, tp_btf_supported=lambda _id: False)
    assert (again.pin_dir, again.reused, again.attach) == (refused.pin_dir, True, "raw_tp")
    # on a kernel that takes tp_btf, auto installs tp_btf in its place
    upgraded = find_or_install(config=config, bpf_dir=bpf_dir)
    assert (upgraded.attach, upgraded.reused, upgraded.retired) == ("tp_btf", False, (refused.pin_dir,))
    # asked for by name, a kind is what is installed: raw_tp where tp_btf would work
    forced = find_or_install(config=ProgramConfig(mark_mask=0x3FFF, map_size=256, attach="raw_tp"), bpf_dir=bpf_dir)
    assert (forced.attach, forced.retired) == ("raw_tp", (upgraded.pin_dir,))
    assert forced.pin_dir == refused.pin_dir  # the same program as auto's fallback: one identity per kind
