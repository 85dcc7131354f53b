"""The collector end to end, as root: real kernel, BPF, nftables, veths and namespaces; no mocks."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.netns import Netns
from devstack.services import free_port
from devstack.traffic import SPOOF_SENDER, UDP_SENDER
from tests.collector.harness import (
    COLLECTOR,
    NET,
    PY,
    UDP_V4_OVERHEAD,
    UDP_V6_OVERHEAD,
    V4_DST,
    V4_SRC,
    V6_DST,
    V6_SRC,
    RunningCollector,
    nft_counter,
    ours,
    pair,
    send,
    tagged_drop,
)

pytestmark = pytest.mark.root


@pytest.mark.parametrize("attach", ["tp_btf", "raw_tp"])
def test_two_policies_ipv4_ipv6_exact_packets_and_bytes(
    netns: Netns, start_collector: Callable[..., RunningCollector], attach: str
) -> None:
    tag = secrets.token_hex(3)
    pol_a, pol_b = f"default/deny-a-{tag}", f"profile/k8s_ns.ns-{tag}/0/deny"
    sender, receiver = pair(netns)
    netns.nft(
        receiver,
        f"""
        table inet pwtest {{
          chain input {{ type filter hook input priority 0; policy accept;
            udp dport 7001 meta mark set 0x101 counter drop comment "{pol_a}"
            udp dport 7002 meta mark set meta mark & 0xffffc000 | 0x202 counter drop comment "{pol_b}"
          }}
        }}
        """,
    )
    collector = start_collector("--bpf-attach", attach)
    assert f"as {attach}" in collector.log
    plan = [  # (dst, port, count, payload size, policy, source, overhead)
        (V4_DST, 7001, 5, 100, pol_a, V4_SRC, UDP_V4_OVERHEAD),
        (V6_DST, 7001, 7, 60, pol_a, V6_SRC, UDP_V6_OVERHEAD),
        (V4_DST, 7002, 3, 33, pol_b, V4_SRC, UDP_V4_OVERHEAD),
        (V6_DST, 7002, 4, 1000, pol_b, V6_SRC, UDP_V6_OVERHEAD),
    ]
    for dst, port, count, size, *_ in plan:
        send(netns, sender, dst, port, count, size)
    send(netns, sender, V4_DST, 7003, 9, 10)  # allowed: no rule drops it
    send(netns, sender, V6_DST, 7003, 9, 10)
    expected: dict[tuple[str, str, str], float] = {}
    for _dst, _port, count, size, policy, src, overhead in plan:
        expected[("calico_denied_packets", policy, src)] = count
        expected[("calico_denied_bytes", policy, src)] = count * (size + overhead)
    got = collector.wait_for(lambda s: ours(s, tag) == expected)
    assert ours(got, tag) == expected
    time.sleep(0.6)  # a few more drains: nothing counted twice
    assert ours(collector.series(), tag) == expected
    # the dropping rules' own counters agree with the exported sums
    for policy in (pol_a, pol_b):
        packets = sum(v for (m, p, _), v in expected.items() if p == policy and m == "calico_denied_packets")
        nbytes = sum(v for (m, p, _), v in expected.items() if p == policy and m == "calico_denied_bytes")
        assert nft_counter(netns, receiver, policy) == (packets, nbytes)
    health = collector.scrape("/collector/metrics").text
    assert "policywatch_collector_drain_duration_seconds_count" in health
    assert "calico_denied" not in health
    assert "policywatch_collector" not in collector.scrape().text


def test_series_expires_after_ttl_and_restarts_from_zero(
    netns: Netns, start_collector: Callable[..., RunningCollector]
) -> None:
    tag = secrets.token_hex(3)
    policy = f"ttl-{tag}"
    sender, receiver = pair(netns)
    tagged_drop(netns, receiver, port=7001, mark=0x55, policy=policy, family="ip")
    collector = start_collector("--ttl", "2")
    key = ("calico_denied_packets", policy, V4_SRC)
    send(netns, sender, V4_DST, 7001, 3, 10)
    last_drop = time.monotonic()
    assert collector.wait_for(lambda s: s.get(key) == 3).get(key) == 3
    gone = collector.wait_for(lambda s: key not in s, timeout=10)
    elapsed = time.monotonic() - last_drop
    assert key not in gone
    assert 1.5 <= elapsed <= 5.0, elapsed  # TTL 2 s after the last drop (+ drain interval and polling)
    send(netns, sender, V4_DST, 7001, 2, 10)
    assert collector.wait_for(lambda s: s.get(key) == 2).get(key) == 2  # a new series, counting from 0


def test_rename_is_picked_up_without_restart_and_fallback_labels(
    netns: Netns, start_collector: Callable[..., RunningCollector]
) -> None:
    tag = secrets.token_hex(3)
    old, new = f"old-{tag}", f"new-{tag}"
    sender, receiver = pair(netns)
    ruleset = """
        table inet pwtest {{
          chain pre {{ type filter hook prerouting priority 0;
            udp dport 7005 meta mark set 0x1ee
          }}
          chain input {{ type filter hook input priority 0;
            udp dport 7001 meta mark set 0x77 counter drop comment "{name}"
            udp dport 7005 drop
            udp dport 7006 drop
          }}
        }}"""
    netns.nft(receiver, ruleset.format(name=old))
    collector = start_collector("--ruleset-refresh", "0.3")
    send(netns, sender, V4_DST, 7001, 2, 10)
    assert (
        collector.wait_for(lambda s: ("calico_denied_packets", old, V4_SRC) in s)[
            ("calico_denied_packets", old, V4_SRC)
        ]
        == 2
    )
    netns.run(receiver, "nft", "delete", "table", "inet", "pwtest")
    netns.nft(receiver, ruleset.format(name=new))
    time.sleep(1.0)  # past --ruleset-refresh
    send(netns, sender, V4_DST, 7001, 4, 10)
    send(netns, sender, V4_DST, 7005, 3, 10)  # mark 0x1ee set by a rule that does not drop: no name for it
    send(netns, sender, V4_DST, 7006, 5, 10)  # dropped with no mark at all: no policy made it
    want = {
        ("calico_denied_packets", new, V4_SRC): 4,
        ("calico_denied_packets", "mark/0x1ee", V4_SRC): 3,
    }
    got = collector.wait_for(lambda s: all(s.get(k) == v for k, v in want.items()))
    assert {k: got.get(k) for k in want} == want
    assert ("calico_denied_packets", "unmarked", V4_SRC) not in got
    unattributed = "policywatch_collector_unattributed_drops_total"
    deadline = time.monotonic() + 5
    while collector.health(unattributed, namespace=receiver) != 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert collector.health(unattributed, namespace=receiver) == 5
    assert got[("calico_denied_packets", old, V4_SRC)] == 2  # the old name's series keeps its total until its TTL
    assert "ruleset_refreshes_total" in collector.scrape("/collector/metrics").text


def test_tiny_map_overflow_keeps_totals_exact(netns: Netns, start_collector: Callable[..., RunningCollector]) -> None:
    tag = secrets.token_hex(3)
    policy = f"flood-{tag}"
    sender, receiver = pair(netns)
    # prerouting: spoofed sources are dropped before reverse-path filtering could discard them
    tagged_drop(netns, receiver, port=7009, mark=0x99, policy=policy, family="ip", hook="prerouting")
    collector = start_collector("--map-size", "16", "--max-series", "40", "--drain-interval", "2")
    sources, repeat = 300, 2
    netns.run(sender, PY, "-c", SPOOF_SENDER, V4_DST, "7009", f"10.{NET[0]}.200.1", str(sources), str(repeat))
    sent = sources * repeat
    assert nft_counter(netns, receiver, policy)[0] == sent  # every packet reached the rule

    def total(s: dict[tuple[str, str, str], float]) -> float:
        return sum(v for (m, p, _), v in s.items() if m == "calico_denied_packets" and p == policy)

    got = collector.wait_for(lambda s: total(s) >= sent)
    assert total(got) == sent
    per_source = [k for k in got if k[0] == "calico_denied_packets" and k[1] == policy and k[2] != "overflow"]
    assert 0 < len(per_source) <= 40
    assert got[("calico_denied_packets", policy, "overflow")] > 0
    assert sum(v for (m, p, _), v in got.items() if m == "calico_denied_bytes" and p == policy) == sent * 46
    overflow_total = next(
        float(line.split()[-1])
        for line in collector.scrape("/collector/metrics").text.splitlines()
        if line.startswith("policywatch_collector_overflow_packets_total")
    )
    # other tests' drops may overflow this tiny map too
    assert overflow_total >= got[("calico_denied_packets", policy, "overflow")]


def test_sigterm_keeps_the_program_attached_and_uninstall_detaches_it(
    start_collector: Callable[..., RunningCollector], collector_dirs: tuple[Path, Path]
) -> None:
    bpf_dir, state_file = collector_dirs
    collector = start_collector()
    prog_id = collector.program_id()
    assert subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True).returncode == 0
    assert collector.stop() == 0
    assert "stays attached" in collector.log
    # still counting with no agent running: the next start loses nothing
    assert subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True).returncode == 0
    done = subprocess.run(
        [str(COLLECTOR), "--uninstall", "--bpf-dir", str(bpf_dir), "--state-file", str(state_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "detached and unpinned 1 BPF program" in done.stdout
    assert subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True).returncode != 0
    assert not bpf_dir.exists() and not state_file.exists()


def test_startup_errors_are_one_line(start_collector: Callable[..., RunningCollector]) -> None:
    running = start_collector()
    busy = subprocess.run(
        [str(COLLECTOR), "--host", "127.0.0.1", "--port", str(running.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert busy.returncode == 1
    errors = [line for line in busy.stderr.splitlines() if "error" in line]
    assert errors == [
        f"policywatch-collector: error: port {running.port} is already in use on 127.0.0.1; "
        "choose another with --port or FELIX_PROMETHEUSREPORTERPORT"
    ]
    assert busy.stderr.splitlines() == errors  # found before the BPF load: no log lines before the error
    nobody = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            str(COLLECTOR),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nobody.returncode == 1
    assert "needs root (or the capabilities CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF)" in nobody.stderr


def test_drain_batch_and_per_key_paths_agree(netns: Netns, collector_dirs: tuple[Path, Path]) -> None:
    """The pinned source in-process: the batch drain, then the per-key fallback (kernels without batch ops)."""
    from collector.bpf_loader import DropCount, ProgramConfig, ensure_installed
    from collector.pinned_source import PinnedDropSource

    sender, receiver = pair(netns)
    netns.nft(
        receiver,
        """table inet pwtest { chain input { type filter hook input priority 0;
            udp dport 7001 meta mark set 0x3a1 drop
        }
        }""",
    )
    installed = ensure_installed(config=ProgramConfig(mark_mask=0x3FFF, map_size=256), bpf_dir=collector_dirs[0])
    source = PinnedDropSource(installed.pin_dir)
    try:

        def mine(expected: list[DropCount]) -> list[DropCount]:
            """Drain until this test's counts reach ``expected`` (neighbour discovery may delay a packet)."""
            merged: dict[tuple[int, str], tuple[int, int]] = {}
            deadline = time.monotonic() + 5
            while True:
                for d in source.drain().drops:
                    if d.policy_id == 0x3A1:
                        p, b = merged.get((d.policy_id, d.src_ip), (0, 0))
                        merged[(d.policy_id, d.src_ip)] = (p + d.packets, b + d.bytes)
                source.commit()
                got = [DropCount(k[0], k[1], p, b) for k, (p, b) in sorted(merged.items())]
                if got == expected or time.monotonic() > deadline:
                    return got
                time.sleep(0.1)

        send(netns, sender, V4_DST, 7001, 6, 20)
        send(netns, sender, V6_DST, 7001, 2, 20)
        send(netns, sender, V4_DST, 7001, 1, 20)  # the key changes back: the cache flushes into the hash
        expected = [DropCount(0x3A1, V4_SRC, 7, 7 * 48), DropCount(0x3A1, V6_SRC, 2, 2 * 68)]
        assert mine(expected) == expected
        assert mine([]) == []  # drained means emptied
        source.batch_ok = False  # as on a kernel without batch map ops
        send(netns, sender, V6_DST, 7001, 3, 20)
        send(netns, sender, V4_DST, 7001, 4, 20)
        expected = [DropCount(0x3A1, V4_SRC, 4, 4 * 48), DropCount(0x3A1, V6_SRC, 3, 3 * 68)]
        assert mine(expected) == expected
        assert mine([]) == []
    finally:
        source.close()


def test_print_bpf_shows_source_and_kernel_defines(capsys: pytest.CaptureFixture[str]) -> None:
    from collector.cli import main

    assert main(["--print-bpf", "--mark-mask", "0xff0"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "-DMARK_MASK=0xff0u" in first and "-DNETFILTER_DROP_REASON=" in first and "-DSPAN_START=" in first
    assert "-DTP_BTF=1" in first and first.endswith("(attached as tp_btf)")
    assert "int count_drops(u64 *ctx)" in out

    assert main(["--print-bpf", "--bpf-attach", "raw_tp"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "-DTP_BTF" not in first and first.endswith("(attached as raw_tp)")


def test_nothing_lost_while_draining_under_load(netns: Netns, start_collector: Callable[..., RunningCollector]) -> None:
    """Drains every 50 ms while a sender floods: the map swap must lose and double-count nothing."""
    tag = secrets.token_hex(3)
    policy = f"busy-{tag}"
    sender, receiver = pair(netns)
    tagged_drop(netns, receiver, port=7001, mark=0x2F1, policy=policy)
    collector = start_collector("--drain-interval", "0.05")
    sources = [(V4_DST, 600_000), (V6_DST, 400_000)]
    procs = [netns.popen(sender, PY, "-c", UDP_SENDER, dst, "7001", str(n), "10") for dst, n in sources]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    dropped = nft_counter(netns, receiver, policy)[0]
    assert dropped > 0.99 * sum(n for _, n in sources)  # (a few may be lost before reaching the rule)
    key_v4 = ("calico_denied_packets", policy, V4_SRC)
    key_v6 = ("calico_denied_packets", policy, V6_SRC)
    got = collector.wait_for(lambda s: s.get(key_v4, 0) + s.get(key_v6, 0) >= dropped)
    assert got.get(key_v4, 0) + got.get(key_v6, 0) == dropped
    drains = next(
        float(line.split()[-1])
        for line in collector.scrape("/collector/metrics").text.splitlines()
        if line.startswith("policywatch_collector_drain_duration_seconds_count")
    )
    assert drains >= 10  # the flood really overlapped many drains


def test_one_mark_two_names_is_a_logged_conflict(
    netns: Netns, start_collector: Callable[..., RunningCollector]
) -> None:
    """Within one namespace; the same mark in two namespaces is no conflict (each names its own drops)."""
    tag = secrets.token_hex(3)
    mark = 0x3000 + secrets.randbelow(0xFFF)
    ns, elsewhere = netns.add("conflict"), netns.add("conflict-b")
    netns.nft(
        ns,
        f"""table inet pwtest {{ chain input {{ type filter hook input priority 0;
            udp dport 7001 meta mark set {mark:#x} counter drop comment "a-{tag}"
            udp dport 7002 meta mark set {mark:#x} counter drop comment "b-{tag}"
        }}
        }}""",
    )
    tagged_drop(netns, elsewhere, port=7001, mark=mark, policy=f"c-{tag}")
    collector = start_collector()
    deadline = time.monotonic() + 10
    while "policy mark conflict" not in collector.log and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in collector.log.splitlines() if "policy mark conflict" in line and tag in line]
    assert len(lines) == 1, collector.log
    # rules are walked in order: the first one's name is kept
    assert f"keeping 'a-{tag}'" in lines[0] and f"'b-{tag}'" in lines[0] and f"c-{tag}" not in lines[0]
    health = collector.scrape("/collector/metrics").text
    conflicts = next(line for line in health.splitlines() if line.startswith("policywatch_collector_policy_conflicts"))
    assert float(conflicts.split()[-1]) >= 1
    assert collector.proc.poll() is None  # a conflict is not a crash
