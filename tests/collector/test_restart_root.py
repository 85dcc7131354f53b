"""Restarts under steady denied traffic: the pinned program keeps counting, the state file keeps the totals."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

import pytest

from devstack.netns import Netns
from tests.collector.harness import V4_DST, V4_SRC, RunningCollector, nft_counter, pair, tagged_drop

pytestmark = pytest.mark.root

PY = sys.executable
# COUNT UDP datagrams to HOST:PORT at about RATE per second.
PACED_SENDER = """
import socket, sys, time
host, port, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
for i in range(count):
    s.sendto(b"r" * 20, (host, port))
    delay = start + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def total(collector: RunningCollector, policy: str) -> float:
    return collector.series().get(("calico_denied_packets", policy, V4_SRC), 0)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_under_traffic_loses_and_repeats_nothing(
    netns: Netns, start_collector: Callable[..., RunningCollector], how: signal.Signals
) -> None:
    policy = f"restart-{how.name.lower()}"
    sender, receiver = pair(netns)
    tagged_drop(netns, receiver, port=7001, mark=0x3C1, policy=policy, family="ip")
    first = start_collector()
    prog_id = first.program_id()
    started_at = first.health("policywatch_collector_start_time_seconds")
    sent = 1500
    traffic = netns.popen(sender, PY, "-c", PACED_SENDER, V4_DST, "7001", str(sent), "500")
    time.sleep(1.0)
    assert total(first, policy) > 0
    first.proc.send_signal(how)
    first.proc.wait(timeout=20)
    time.sleep(0.5)  # drops while no agent runs: the pinned program counts them
    second = start_collector()
    assert second.program_id() == prog_id  # the same program, never detached
    assert "reused, still attached" in second.log
    assert traffic.wait(timeout=60) == 0
    dropped = nft_counter(netns, receiver, policy)[0]
    assert dropped == sent
    got = second.wait_for(lambda s: s.get(("calico_denied_packets", policy, V4_SRC), 0) >= dropped)
    assert got[("calico_denied_packets", policy, V4_SRC)] == dropped  # the total continued, exactly
    assert got[("calico_denied_bytes", policy, V4_SRC)] == dropped * 48
    time.sleep(0.6)
    assert total(second, policy) == dropped  # nothing counted twice later either
    restarted_at = second.health("policywatch_collector_start_time_seconds")
    assert started_at is not None and restarted_at is not None and restarted_at > started_at


def test_killed_between_saving_and_emptying_counts_once(netns: Netns, collector_dirs: tuple) -> None:
    """The drain was read, added and saved, and the agent died before emptying the maps: the next start empties
    them without counting them again, and counts what came after."""
    from collector import lifecycle
    from collector.bpf_loader import ProgramConfig
    from collector.series import SeriesStore

    bpf_dir, state_file = collector_dirs
    sender, receiver = pair(netns)
    tagged_drop(netns, receiver, port=7001, mark=0x3C2, policy="p", family="ip")
    config = ProgramConfig(mark_mask=0x3FFF, map_size=256)

    def ours(store: SeriesStore) -> int:
        return sum(s.packets for s in store.samples())

    def drain_into(source: object, store: SeriesStore) -> None:
        for d in source.drain().drops:  # type: ignore[attr-defined]
            if d.policy_id == 0x3C2:
                store.add(policy="p", src_ip=d.src_ip, packets=d.packets, nbytes=d.bytes)

    store = SeriesStore(ttl=60, max_series=100)
    first = lifecycle.start(config=config, bpf_dir=bpf_dir, state_file=state_file, store=store)
    assert not first.installed.reused
    netns.run(sender, PY, "-c", PACED_SENDER, V4_DST, "7001", "5", "1000")
    drain_into(first.source, store)  # a fresh program counts into generation 0, which this drain reads
    lifecycle.persister(state_file=state_file, source=first.source, store=store)()
    assert ours(store) == 5
    first.source.close()  # "killed": saved, never committed

    netns.run(sender, PY, "-c", PACED_SENDER, V4_DST, "7001", "3", "1000")
    store = SeriesStore(ttl=60, max_series=100)
    second = lifecycle.start(config=config, bpf_dir=bpf_dir, state_file=state_file, store=store)
    assert second.installed.reused and second.restored == 1
    for _ in range(3):
        drain_into(second.source, store)
        second.source.commit()
    second.source.close()
    assert ours(store) == 8 == nft_counter(netns, receiver, "p")[0]


def test_a_changed_program_replaces_the_old_one_and_drains_its_maps(
    netns: Netns, start_collector: Callable[..., RunningCollector], collector_dirs: tuple
) -> None:
    import subprocess

    bpf_dir, _ = collector_dirs
    sender, receiver = pair(netns)
    tagged_drop(netns, receiver, port=7001, mark=0x3C3, policy="upgrade", family="ip")
    key = ("calico_denied_packets", "upgrade", V4_SRC)
    first = start_collector("--map-size", "256")
    old_id = first.program_id()
    netns.run(sender, PY, "-c", PACED_SENDER, V4_DST, "7001", "4", "1000")
    assert first.wait_for(lambda s: s.get(key) == 4).get(key) == 4
    assert first.stop() == 0
    netns.run(sender, PY, "-c", PACED_SENDER, V4_DST, "7001", "3", "1000")  # counted by the old program alone
    second = start_collector("--map-size", "512")  # another program: installed, the old one replaced
    assert second.program_id() != old_id
    assert second.wait_for(lambda s: s.get(key) == 7).get(key) == 7 == nft_counter(netns, receiver, "upgrade")[0]
    assert subprocess.run(["bpftool", "prog", "show", "id", str(old_id)], capture_output=True).returncode != 0
    assert len([d for d in bpf_dir.iterdir() if d.is_dir()]) == 1


def test_failing_batch_syscalls_lose_nothing(
    netns: Netns, collector_dirs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's batch calls failing midway (injected: the kernel offers no way to make them fail on demand):
    a failed read leaves the maps as they were for the next drain, a failed delete falls back key by key."""
    from collector import pinned_source
    from collector.bpf_loader import ProgramConfig, ensure_installed
    from collector.pinned_source import PinnedDropSource
    from devstack.traffic import SPOOF_SENDER

    sender, receiver = pair(netns)
    tagged_drop(netns, receiver, port=7009, mark=0x3C4, policy="faults", family="ip", hook="prerouting")
    installed = ensure_installed(config=ProgramConfig(mark_mask=0x3FFF, map_size=4096), bpf_dir=collector_dirs[0])
    source = PinnedDropSource(installed.pin_dir)
    real_lookup, real_delete = pinned_source.bpf_sys.lookup_batch, pinned_source.bpf_sys.delete_batch
    calls = {"lookup": 0}

    def lookup_fails_on_the_second_chunk(*args: object, **kwargs: object) -> tuple[int, bool]:
        calls["lookup"] += 1
        if calls["lookup"] == 2:
            raise OSError(5, "injected EIO")
        return real_lookup(*args, **kwargs)  # type: ignore[arg-type]

    def delete_fails(*args: object, **kwargs: object) -> int:
        raise OSError(5, "injected EIO")

    counted = 0
    try:
        netns.run(sender, PY, "-c", SPOOF_SENDER, V4_DST, "7009", "10.233.0.1", "1500", "1")  # 1500 entries: 2 chunks
        monkeypatch.setattr(pinned_source.bpf_sys, "lookup_batch", lookup_fails_on_the_second_chunk)
        monkeypatch.setattr(pinned_source.bpf_sys, "delete_batch", delete_fails)
        failures = 0
        for _ in range(6):
            try:
                drained = source.drain()
            except OSError:
                failures += 1
                continue
            counted += sum(d.packets for d in drained.drops + drained.overflow if d.policy_id == 0x3C4)
            source.commit()
        assert failures == 1
        monkeypatch.setattr(pinned_source.bpf_sys, "delete_batch", real_delete)
        for _ in range(2):
            counted += sum(d.packets for d in source.drain().drops if d.policy_id == 0x3C4)
            source.commit()
    finally:
        source.close()
    assert counted == 1500 == nft_counter(netns, receiver, "faults")[0]
