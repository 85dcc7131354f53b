"""Parts of bench/collector/bench_collector.py: the veth flood into an nft drop, the collector process, the
evaluator it ships flow records to, and the spoofed-source and drain-cost sections."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from collector.bpf_loader import (  # noqa: E402  (the repo root is put on the path just above)
    ProgramConfig,
    ensure_installed,
    uninstall,
)
from collector.cli import program_config  # noqa: E402
from collector.config import parse_config  # noqa: E402
from collector.pinned_source import PinnedDropSource  # noqa: E402
from devstack.netns import Netns  # noqa: E402
from devstack.services import free_port  # noqa: E402
from devstack.traffic import SPOOF_SENDER  # noqa: E402

HERE = Path(__file__).resolve().parent
COLLECTOR = Path(sys.executable).with_name("policywatch-collector")
POLICY = "bench/flood-deny"
# A random mark: another namespace binding the same mark to another name would win the name (a conflict).
MARK = 0x1000 + secrets.randbelow(0x2FFF)
SRC, DST, DPORT = "10.251.0.1", "10.251.0.2", 9
SPOOF_BASE = "10.128.0.0"  # 1,000,000 sources fit in 10.128.0.0 - 10.143.66.63
# The baseline "empty program" is a classic tracepoint program; the collector attaches raw, so an empty
# raw-tracepoint program is measured too (the fairest floor for the collector's own attach type).
EMPTY_PROGRAMS = {
    "empty tracepoint": """
enum skb_drop_reason { SKB_DROP_REASON_FROM_FORMAT_FILE__ = 0 };
TRACEPOINT_PROBE(skb, kfree_skb) { return 0; }
""",
    "empty raw tp": "RAW_TRACEPOINT_PROBE(kfree_skb) { return 0; }\n",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
FLOOD_CPU = (os.cpu_count() or 1) - 1


def build_flood(workdir: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("bench: gcc is needed to build the flood sender (apt-get install gcc)")
    binary = workdir / "flood"
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(HERE / "flood.c")], check=True)
    return binary


def mac_of(net: Netns, ns: str, ifname: str) -> str:
    info = json.loads(net.run(ns, "ip", "-j", "link", "show", "dev", ifname))
    return str(info[0]["address"])


def nft_packets(net: Netns, ns: str) -> int:
    out = net.run(ns, "nft", "-j", "list", "chain", "ip", "pwbench", "pre")
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule and rule.get("comment") == POLICY:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
    raise RuntimeError("bench rule not found")


class Bench:
    def __init__(self, net: Netns, flood: Path, duration: float) -> None:
        self.net = net
        self.flood_bin = flood
        self.duration = duration
        self.sender = net.add("bsend")
        self.receiver = net.add("brecv")
        self.if_send, self.if_recv = net.veth(self.sender, self.receiver, addrs_a=[f"{SRC}/24"], addrs_b=[f"{DST}/24"])
        # prerouting: spoofed sources are dropped before reverse-path filtering could discard them
        net.nft(
            self.receiver,
            f"""table ip pwbench {{
              chain pre {{ type filter hook prerouting priority 0;
                udp dport {DPORT} meta mark set {MARK:#x} counter drop comment "{POLICY}"
              }}
            }}""",
        )
        self.slices: list[int] = []
        self.cpu_ns = 0.0
        self.cpu_others_s = 0.0  # CPU time other tasks took on FLOOD_CPU during the last flood
        self.steal_s = 0.0  # time the hypervisor took FLOOD_CPU away during the last flood
        self.smac = mac_of(net, self.sender, self.if_send)
        self.dmac = mac_of(net, self.receiver, self.if_recv)

    def start_flood(self, seconds: float) -> subprocess.Popen[bytes]:
        """A flood from one source in the background; ``tx_packets(proc.pid)`` follows it."""
        argv = ["ip", "netns", "exec", self.sender, "taskset", "-c", str(FLOOD_CPU), str(self.flood_bin)]
        argv += [self.if_send, self.smac, self.dmac, SRC, DST, str(DPORT), "1", str(seconds)]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def tx_packets(self, pid: int) -> int:
        """Frames the sender's veth has sent, read in the namespace of process ``pid`` (the flood)."""
        for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines():
            name, _, counters = line.partition(":")
            if name.strip() == self.if_send:
                return int(counters.split()[9])
        raise RuntimeError(f"{self.if_send} not in the namespace of {pid}")

    def flood(self, *, sources: int = 1, seconds: float | None = None) -> tuple[int, int]:
        """(frames sent, packets the nft rule dropped).

        Also sets ``self.slices`` (frames sent in each second) and ``self.cpu_ns`` (CPU the whole packet path
        took: the sender, pinned to FLOOD_CPU, runs the receive side too, in its own softirqs or in that
        CPU's ksoftirqd). CPU per packet is robust against other load on the machine; the pps rate is not.
        """
        before = nft_packets(self.net, self.receiver)
        duration = seconds or self.duration
        argv = ["ip", "netns", "exec", self.sender, "taskset", "-c", str(FLOOD_CPU), str(self.flood_bin)]
        argv += [self.if_send, self.smac, self.dmac, SRC if sources == 1 else SPOOF_BASE, DST, str(DPORT)]
        argv += [str(sources), str(duration)]
        soft0 = ksoftirqd_cpu_ns(FLOOD_CPU)
        busy0, steal0 = cpu_busy_steal(FLOOD_CPU)
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
            _pid, status, usage = os.wait4(proc.pid, 0)  # ip and taskset exec: the rusage is the sender's
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read()
        if proc.returncode != 0:
            raise RuntimeError(f"flood failed ({proc.returncode}): {text}")
        self.cpu_ns = (usage.ru_utime + usage.ru_stime) * 1e9 + ksoftirqd_cpu_ns(FLOOD_CPU) - soft0
        busy1, steal1 = cpu_busy_steal(FLOOD_CPU)
        self.steal_s = steal1 - steal0
        self.cpu_others_s = max(0.0, busy1 - busy0 - self.cpu_ns / 1e9)
        lines = text.splitlines()
        self.slices = [int(x) for x in lines[0].split()[1:]]
        sent = int(lines[-1].split()[-1])
        return sent, nft_packets(self.net, self.receiver) - before


def ksoftirqd_cpu_ns(cpu: int) -> float:
    """CPU time (ns) of ksoftirqd/<cpu> so far."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if f"(ksoftirqd/{cpu})" in text:
            fields = text.rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK * 1e9
    return 0.0


def cpu_busy_steal(cpu: int) -> tuple[float, float]:
    """(busy seconds, steal seconds) of one CPU so far, from /proc/stat (tick-sampled)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in line.split()[1:9])
            return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK
    return 0.0, 0.0


class ProgramOnly:
    """The collector's own BPF program (the configuration its default flags build), installed and attached by
    the installer child, with no agent draining it: what the kernel side alone costs. ``counted()`` drains the
    pins once afterwards."""

    def __init__(self, *args: str) -> None:
        self.bpf_dir = Path("/sys/fs/bpf") / f"pwbench-{secrets.token_hex(4)}"
        config = program_config(parse_config(list(args), {}))
        installed = ensure_installed(config=config, bpf_dir=self.bpf_dir)
        self.pin_dir = installed.pin_dir
        self.tracepoint = None if installed.attach == "tp_btf" else "kfree_skb"  # for raw_tracepoint_open

    def counted(self) -> int:
        source = PinnedDropSource(self.pin_dir)
        try:
            drained = source.drain()
            source.commit()
        finally:
            source.close()
        return sum(d.packets for d in drained.drops + drained.overflow if d.policy_id == MARK)

    def stop(self) -> None:
        uninstall(self.bpf_dir)


class Collector:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="pw-collector-", suffix=".log")
        # its own pin directory and state file, removed at stop(): every run installs a fresh program
        self.bpf_dir = Path("/sys/fs/bpf") / f"pwbench-{secrets.token_hex(4)}"
        self.state_file = Path(tempfile.gettempdir()) / f"{self.bpf_dir.name}.json"
        argv = [str(COLLECTOR), "--host", "127.0.0.1", "--port", str(self.port), "--ttl", "600", *args]
        argv += ["--bpf-dir", str(self.bpf_dir), "--state-file", str(self.state_file)]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "attached BPF program id" not in Path(self.log.name).read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("collector did not start:\n" + Path(self.log.name).read_text())
            time.sleep(0.1)

    @property
    def attach(self) -> str:
        """How the collector attached its program (tp_btf or raw_tp), from its start-up line."""
        text = Path(self.log.name).read_text()
        return text.split("to skb:kfree_skb as ", 1)[1].split()[0] if "to skb:kfree_skb as " in text else "?"

    def scrape(self, path: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=30).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def counted(self) -> tuple[int, int]:
        """(packets of the bench policy, number of its series)."""
        samples = self.scrape("/metrics")
        mine = [
            v
            for (name, labels), v in samples.items()
            if name == "calico_denied_packets" and ("policy", POLICY) in labels
        ]
        return int(sum(mine)), len(mine)

    def health(self, name: str) -> float:
        return next((v for (n, _), v in self.scrape("/collector/metrics").items() if n == name), 0.0)

    def cpu_seconds(self) -> float:
        """utime + stime of all its threads, and of its children waited for (nft and iptables reads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / CLK_TCK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()
        uninstall(self.bpf_dir)
        self.state_file.unlink(missing_ok=True)


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def drain_cost(bench: Bench) -> None:
    """One drain (swap, read, delete) of the agent's pinned source, idle and with 10 entries, at 16k and 1M slots."""
    results: dict[int, tuple[float, float]] = {}
    for size in (16384, 1 << 20):
        bpf_dir = Path("/sys/fs/bpf") / f"pwbench-{secrets.token_hex(4)}"
        try:
            source = PinnedDropSource(ensure_installed(config=ProgramConfig(0x3FFF, size), bpf_dir=bpf_dir).pin_dir)
            try:

                def one_drain(source: PinnedDropSource = source) -> float:
                    t0 = time.perf_counter()
                    source.drain()
                    source.commit()
                    return time.perf_counter() - t0

                for _ in range(3):
                    one_drain()  # empty what installing and other traffic left
                idle = median([one_drain() for _ in range(50)])
                busy = []
                for i in range(20):
                    spoof = ["ip", "netns", "exec", bench.sender, sys.executable, "-c", SPOOF_SENDER, DST, str(DPORT)]
                    subprocess.run([*spoof, f"10.{200 + i}.0.1", "10", "1"], check=True)  # 10 sources: 10 entries
                    busy.append(one_drain())
                results[size] = (idle, median(busy))
            finally:
                source.close()
        finally:
            uninstall(bpf_dir)
    print("drain of the agent's pinned maps (swap, read, delete), median:")
    for size, (idle, busy) in results.items():
        print(f"  --map-size {size:>9,}: idle {1e3 * idle:7.3f} ms, 10 entries {1e3 * busy:7.3f} ms")
    (idle_s, busy_s), (idle_l, busy_l) = results[16384], results[1 << 20]
    print(f"  1M / 16k: idle {idle_l / idle_s:.2f}x, 10 entries {busy_l / busy_s:.2f}x   target <= 2x")


def spoofed(bench: Bench, args: argparse.Namespace) -> None:
    collector = Collector("--max-series", str(args.max_series))
    try:
        time.sleep(3)
        idle = collector.rss_mb()
        peak = idle
        peak_entries = 0.0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak, peak_entries
            while not done.wait(0.25):
                peak = max(peak, collector.rss_mb())
                peak_entries = max(peak_entries, collector.health("policywatch_collector_map_entries"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        sent, dropped = bench.flood(sources=args.sources)
        time.sleep(3)
        done.set()
        watcher.join()
        peak = max(peak, collector.rss_mb())
        counted, series = collector.counted()
        overflow = collector.health("policywatch_collector_overflow_packets_total")
        drains = collector.health("policywatch_collector_drain_duration_seconds_count")
        drain_mean = collector.health("policywatch_collector_drain_duration_seconds_sum") / max(drains, 1)
        print(f"flood from {args.sources:,} spoofed sources, {args.duration:g} s, --max-series {args.max_series}:")
        print(f"  sent {sent:,}, dropped by the rule {dropped:,}, counted {counted:,}: exact = {counted == dropped}")
        print(
            f"  series of the policy {series:,} (cap {args.max_series:,} + 1 overflow),"
            f" overflow packets {overflow:,.0f}"
        )
        print(
            f"  BPF map peak entries {peak_entries:,.0f} (--map-size default 16,384);"
            f" mean drain {1000 * drain_mean:.0f} ms"
        )
        print(
            f"  collector RSS idle {idle:.1f} MB (target <= 80 MB steady),"
            f" peak {peak:.1f} MB, growth {peak - idle:.1f} MB"
        )
    finally:
        collector.stop()
