"""Collector benchmark: a 64-byte UDP flood over a veth into an nft drop, with and without BPF, in one run.

Run as root from the repository:  .venv/bin/python bench/collector/bench_collector.py [--duration 10 --runs 3]

Prints, each from this run, configurations interleaved run by run:
  pps with no BPF program, an empty kfree_skb tracepoint and raw-tracepoint program, the collector's BPF program
  attached with no agent draining it ("program only"), the full collector (program + agent), and the same two with
  --flow-logs (the collector shipping to a real policywatch-evaluator);
  where the cost is: each configuration over the same run's empty raw-tracepoint program (median of the per-run
  ratios, by pps and by CPU per packet), the agent's share (collector over program only), and the agent's CPU
  seconds during each flood (utime + stime from /proc/PID/stat), with the time other tasks and the hypervisor
  took from the flood's CPU in each flood (the noise of a shared 2-core machine);
  BPF ns per event (kernel.bpf_stats_enabled=1 for extra runs, restored after);
  counted/sent (the collector's total against the frames sent and against the dropping rule's nft counter);
  then a flood from --sources distinct spoofed sources: series capped at --max-series, collector RSS growth over
  its idle size, the BPF map's peak entries, and whether the totals stay exact; and the drain time at 16k and 1M
  slots.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    EMPTY_PROGRAMS,
    FLOOD_CPU,
    Bench,
    Collector,
    Netns,
    ProgramOnly,
    build_flood,
    drain_cost,
    median,
    spoofed,
)

from collector import bpf_sys
from collector.bpf_loader import read_prog_stats
from devstack.services import EvaluatorServer

# Seconds between setting a configuration up and its flood: the installer child's exit and the kernel's deferred
# frees of the previous configuration's maps stay out of the measured flood. The same for every configuration.
SETTLE = 1.0
BASE = "empty raw tp"  # the floor every ratio is taken against: the collector's own attach kind, empty
CONTROL = "empty raw tp #2"  # a second empty program, measured like the collector's against the first


@dataclass
class Figures:
    pps: list[float] = field(default_factory=list)
    cpu_ns: list[float] = field(default_factory=list)  # CPU per dropped packet on the flood's CPU
    best: int = 0  # best one-second rate
    agent_cpu: list[float] = field(default_factory=list)  # the collector process's CPU seconds during the flood
    others: list[float] = field(default_factory=list)  # CPU seconds other tasks took on the flood's CPU
    steal: list[float] = field(default_factory=list)
    counted: int = 0
    dropped: int = 0
    sent: int = 0


def runs_text(values: list[float], fmt: str = ",.0f") -> str:
    return ", ".join(format(x, fmt) for x in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per flood (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="floods per configuration (default 3)")
    parser.add_argument("--sources", type=int, default=1_000_000, help="spoofed sources in the last flood")
    parser.add_argument("--max-series", type=int, default=10000)
    parser.add_argument(
        "--ab-seconds", type=float, default=40, help="the flood whose attached program alternates (default 40)"
    )
    parser.add_argument("--ab-window", type=float, default=0.25, help="seconds per program in it (default 0.25)")
    parser.add_argument("--alternating-only", action="store_true", help="only the flood alternating programs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (BPF, namespaces)")
    from bcc import BPF

    net = Netns()
    with tempfile.TemporaryDirectory(prefix="pwbench-") as tmp:
        try:
            bench = Bench(net, build_flood(Path(tmp)), args.duration)
            evaluator = EvaluatorServer(  # a real evaluator (no scheduler) for the flow records
                f"sqlite:///{Path(tmp) / 'bench.db'}",
                log_path=Path(tmp) / "evaluator.log",
                args=("--no-scheduler", "--log-level", "warning"),
            )
            flow_args = ("--flow-logs", "--flow-logs-url", evaluator.url, "--flow-logs-flush-interval", "1")
            bench.flood(seconds=1)  # warm-up: ARP-free path, caches
            if args.alternating_only:
                alternating(bench, BPF, flow_args, seconds=args.ab_seconds, window=args.ab_window)
                return
            d = args.duration
            print(
                f"64-byte UDP flood over veth into an nft drop, {d:g} s x {args.runs} runs each, {os.cpu_count()} CPUs"
                f" (sender and its receive path pinned to CPU {FLOOD_CPU})"
            )

            @contextlib.contextmanager
            def empty(text: str) -> Iterator[None]:
                prog = BPF(text=text)
                try:
                    yield None
                finally:
                    prog.cleanup()

            @contextlib.contextmanager
            def started(make: Callable[[], ProgramOnly | Collector]) -> Iterator[ProgramOnly | Collector]:
                handle = make()
                try:
                    yield handle
                finally:
                    handle.stop()

            configs: dict[str, Callable[[], contextlib.AbstractContextManager[ProgramOnly | Collector | None]]] = {
                "no BPF": contextlib.nullcontext,
                **{label: (lambda text=text: empty(text)) for label, text in EMPTY_PROGRAMS.items()},
                "program only": lambda: started(ProgramOnly),
                "collector": lambda: started(Collector),
                "program + flows": lambda: started(lambda: ProgramOnly(*flow_args)),
                "collector + flows": lambda: started(lambda: Collector(*flow_args)),
            }
            figures = {label: Figures() for label in configs}
            shipped = 0.0
            attach = "?"
            # Configurations interleaved run by run, so drift in machine load spreads over all of them.
            for _ in range(args.runs):
                for label, make in configs.items():
                    f = figures[label]
                    with make() as handle:
                        time.sleep(SETTLE)
                        cpu0 = handle.cpu_seconds() if isinstance(handle, Collector) else 0.0
                        sent, dropped = bench.flood()
                        if isinstance(handle, Collector):
                            f.agent_cpu.append(handle.cpu_seconds() - cpu0)
                            attach = handle.attach
                            time.sleep(2.5)  # the last drains
                            if label == "collector":
                                f.counted += handle.counted()[0]
                            else:
                                shipped += handle.health("policywatch_collector_flow_records_shipped_total")
                        elif isinstance(handle, ProgramOnly):
                            f.counted += handle.counted()
                    f.pps.append(dropped / d)
                    f.cpu_ns.append(bench.cpu_ns / max(1, dropped))
                    f.best = max([f.best, *bench.slices])
                    f.others.append(bench.cpu_others_s)
                    f.steal.append(bench.steal_s)
                    f.sent += sent
                    f.dropped += dropped

            stats = bpf_stats(bench, BPF, flow_args)
            report(figures, stats, d=d, attach=attach, shipped=shipped)
            alternating(bench, BPF, flow_args, seconds=args.ab_seconds, window=args.ab_window)
            spoofed(bench, args)
            drain_cost(bench)
        finally:
            if "evaluator" in locals():
                evaluator.stop()
            net.close()


def bpf_stats(bench: Bench, bpf: type, flow_args: tuple[str, ...]) -> dict[str, float]:
    """ns per event of an empty raw-tracepoint program, the collector's program and the one with flow logs, each
    over one flood with kernel.bpf_stats_enabled=1 (which itself adds to every run it measures)."""
    stats_path = Path("/proc/sys/kernel/bpf_stats_enabled")
    previous = stats_path.read_text().strip()
    stats_path.write_text("1\n")
    out: dict[str, float] = {}
    try:
        empty_prog = bpf(text=EMPTY_PROGRAMS[BASE])
        try:
            fd = empty_prog.funcs[b"raw_tracepoint__kfree_skb"].fd
            e0 = read_prog_stats(fd) or (0, 0)
            bench.flood()
            e1 = read_prog_stats(fd) or (0, 0)
        finally:
            empty_prog.cleanup()
        out[BASE] = (e1[0] - e0[0]) / (e1[1] - e0[1]) if e1[1] > e0[1] else float("nan")
        for label, args in (("collector", ()), ("collector + flows", flow_args)):
            collector = Collector(*args)
            try:
                t0 = collector.health("policywatch_collector_bpf_run_time_seconds_total")
                n0 = collector.health("policywatch_collector_bpf_run_count_total")
                bench.flood()
                t1 = collector.health("policywatch_collector_bpf_run_time_seconds_total")
                n1 = collector.health("policywatch_collector_bpf_run_count_total")
                out[label + " runs"] = n1 - n0
                out[label] = (t1 - t0) * 1e9 / (n1 - n0) if n1 > n0 else float("nan")
                out[label + " misses"] = collector.health("policywatch_collector_bpf_recursion_misses_total")
            finally:
                collector.stop()
    finally:
        stats_path.write_text(previous + "\n")
    return out


def report(figures: dict[str, Figures], stats: dict[str, float], *, d: float, attach: str, shipped: float) -> None:
    none, base, c, p = figures["no BPF"], figures[BASE], figures["collector"], figures["program only"]
    for label, f in figures.items():
        note = f"; attached as {attach}" if label == "collector" else ""
        print(
            f"  {label:<18} {median(f.pps):>10,.0f} pps  ratio to no BPF {median(f.pps) / median(none.pps):.3f}"
            f"  (runs: {runs_text(f.pps)}{note})"
        )

    def paired(label: str, over: str, values: str) -> float:
        a, b = getattr(figures[label], values), getattr(figures[over], values)
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        # CPU per packet: the lower, the faster; its ratio is turned around to read like a pps ratio
        return median([1 / r for r in ratios] if values == "cpu_ns" else ratios)

    print(
        f"where the cost is: median over runs of each run's ratio (pps | CPU per packet on CPU {FLOOD_CPU},"
        " the latter robust against other load taking that CPU):"
    )
    rows = [
        ("program only", BASE, "BPF program, no agent / empty raw tp", ""),
        ("collector", BASE, "collector (program + agent) / empty raw tp", "   target >= 0.98"),
        ("collector", "program only", "agent's share: collector / program only", ""),
        ("program + flows", "program only", "flow-logs BPF: program + flows / program only", ""),
        ("collector + flows", "collector", "collector + flows / collector", "   target >= 0.97"),
        ("collector + flows", "program + flows", "agent's share with flows", ""),
    ]
    for label, over, text, target in rows:
        print(f"  {text:<46} {paired(label, over, 'pps'):.3f} | {paired(label, over, 'cpu_ns'):.3f}{target}")
    print(
        f"  collector / empty raw tp (medians) {median(c.pps) / median(base.pps):.3f} pps,"
        f" {median(base.cpu_ns) / median(c.cpu_ns):.3f} CPU;"
        f" collector + flows / collector {median(figures['collector + flows'].pps) / median(c.pps):.3f}"
        f" pps  ({shipped:,.0f} flow records shipped)"
    )
    print("  best one-second rate of each (less sensitive to other load on the machine):")
    for label, f in figures.items():
        print(f"    {label:<18} {f.best:>10,} pps  ratio to {BASE} {f.best / base.best:.3f}")
    print(f"  CPU per dropped packet; CPU {FLOOD_CPU} taken by other tasks | steal, per run:")
    for label, f in figures.items():
        print(
            f"    {label:<18} {median(f.cpu_ns):>7.1f} ns  (runs: {runs_text(f.cpu_ns, '.1f')})"
            f"   others {runs_text(f.others, '.2f')} s | steal {runs_text(f.steal, '.2f')} s"
        )
    for label in ("collector", "collector + flows"):
        f = figures[label]
        print(
            f"  agent CPU during each {d:g} s flood, {label}: {runs_text(f.agent_cpu, '.3f')} s"
            f" (median {100 * median(f.agent_cpu) / d:.2f}% of one core)"
        )
    empty_ns = stats[BASE]
    for label in ("collector", "collector + flows"):
        print(
            f"  BPF per event, {label:<17} {stats[label]:>6.1f} ns ({stats[label + ' runs']:,.0f} runs under"
            f" bpf_stats), net of the empty raw tp's {empty_ns:.1f} ns: {stats[label] - empty_ns:.1f} ns"
            + ("   target <= 20" if label == "collector" else "")
        )
    print(f"  recursion misses  {stats['collector misses']:>12,.0f}      (drops the kernel skipped: nested runs)")
    print(f"  counted/sent      {c.counted / c.sent:>12.6f}  ({c.counted:,} counted, {c.sent:,} sent)")
    print(
        f"  counted/nft drop  {c.counted / c.dropped:>12.6f}  ({c.dropped:,} dropped by the rule)   target exactly 1;"
        f" program only (drained once after each flood) {p.counted / p.dropped:.6f}"
    )


class Attachable:
    """A loaded program attached and detached by its own link (raw_tracepoint_open, close)."""

    def __init__(self, prog_fd: int, tracepoint: str | None) -> None:
        self.prog_fd, self.tracepoint, self.link = prog_fd, tracepoint, -1

    def attach(self) -> None:
        self.link = bpf_sys.raw_tracepoint_open(self.prog_fd, self.tracepoint)

    def detach(self) -> None:
        if self.link >= 0:
            os.close(self.link)  # the last reference: detached before close() returns
            self.link = -1


def switching_flood(
    bench: Bench,
    states: dict[str, Attachable],
    cycle: list[str],
    *,
    seconds: float,
    window: float,
    entered: Callable[[str], None] = lambda label: None,
) -> list[tuple[str, float]]:
    """One flood of ``seconds``; every ``window`` the attached program changes along ``cycle``. Each window's rate
    is the sender veth's frames over it (/proc/<flood>/net/dev), the switch itself left out."""
    rates: list[tuple[str, float]] = []
    proc = bench.start_flood(seconds + 2)
    try:
        time.sleep(1.0)  # in its namespace, flooding
        current = states[cycle[0]]
        current.attach()
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            label = cycle[i % len(cycle)]
            if states[label] is not current:
                states[label].attach()  # the next program first, then the last one off: never none attached
                current.detach()
                current = states[label]
            entered(label)
            c0, t0 = bench.tx_packets(proc.pid), time.monotonic()
            time.sleep(window)
            c1, t1 = bench.tx_packets(proc.pid), time.monotonic()
            rates.append((label, (c1 - c0) / (t1 - t0)))
            i += 1
    finally:
        for state in states.values():
            state.detach()
        proc.wait(timeout=30)
    return rates


def window_ratios(rates: list[tuple[str, float]], labels: list[str]) -> dict[str, list[float]]:
    """Each window of ``labels`` over the mean of the BASE windows on either side of it."""
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    for k in range(1, len(rates) - 1):
        label, rate = rates[k]
        if label in ratios and rates[k - 1][0] == rates[k + 1][0] == BASE:
            ratios[label].append(rate / ((rates[k - 1][1] + rates[k + 1][1]) / 2))
    return ratios


def print_ratios(ratios: dict[str, list[float]], notes: dict[str, str]) -> None:
    for label, values in ratios.items():
        q = sorted(values)
        spread = f"quartiles {q[len(q) // 4]:.3f} - {q[3 * len(q) // 4]:.3f}, mean {sum(q) / len(q):.3f}" if q else ""
        value = median(values) if values else float("nan")
        print(f"  {label:<18} {value:.3f} of {BASE}  ({len(q)} windows, {spread}){notes.get(label, '')}")


def alternating(bench: Bench, bpf: type, flow_args: tuple[str, ...], *, seconds: float, window: float) -> None:
    """Cycling empty raw tp, program only, empty raw tp, program + flows, empty raw tp, a second copy of the empty
    program (the control: what the method reads for no difference) within one flood. A program's window is compared
    with the two empty windows around it: the machine's speed, which drifts by 10% from one second to the next here,
    cancels out. Kernel side only (no agent). Then the full collector: its own program and a running agent,
    against the empty program with the agent stopped (SIGSTOP), every other second."""
    empty = bpf(text=EMPTY_PROGRAMS[BASE])
    control = bpf(text=EMPTY_PROGRAMS[BASE])
    programs = [ProgramOnly(), ProgramOnly(*flow_args)]
    fds: list[int] = []
    try:
        states = {}
        for label, prog in ((BASE, empty), (CONTROL, control)):
            prog.detach_raw_tracepoint(b"kfree_skb")
            states[label] = Attachable(prog.funcs[b"raw_tracepoint__kfree_skb"].fd, "kfree_skb")
        for label, installed in zip(("program only", "program + flows"), programs, strict=True):
            (installed.pin_dir / "link").unlink()  # detached once the pin's reference goes
            fds.append(bpf_sys.obj_get(installed.pin_dir / "prog"))
            states[label] = Attachable(fds[-1], installed.tracepoint)
        time.sleep(0.5)
        cycle = [BASE, "program only", BASE, "program + flows", BASE, CONTROL]
        rates = switching_flood(bench, states, cycle, seconds=seconds, window=window)
    finally:
        for fd in fds:
            os.close(fd)
        for installed in programs:
            installed.stop()
    ratios = window_ratios(rates, ["program only", "program + flows", CONTROL])
    print(
        f"one {seconds:g} s flood, the attached program switched every {window:g} s ({', '.join(cycle)}, ...;"
        f" kernel side only, no agent), each window over the {BASE} windows around it, median:"
    )
    print(f"  {BASE:<18} {median([r for label, r in rates if label == BASE]):>10,.0f} pps (median window)")
    print_ratios(ratios, {"program only": "   target >= 0.98", CONTROL: "   (control: no difference)"})
    flows = median(ratios["program + flows"]) / median(ratios["program only"])
    print(f"  program + flows / program only {flows:.3f}")

    collector = Collector()
    fd = -1
    try:
        pin_dir = next(collector.bpf_dir.glob("*/link")).parent
        pin_dir.joinpath("link").unlink()
        fd = bpf_sys.obj_get(pin_dir / "prog")
        time.sleep(0.5)
        states = {
            BASE: states[BASE],
            "collector": Attachable(fd, None if collector.attach == "tp_btf" else "kfree_skb"),
        }

        def entered(label: str) -> None:  # the agent runs only while its program is attached
            collector.proc.send_signal(signal.SIGCONT if label == "collector" else signal.SIGSTOP)

        cpu0 = collector.cpu_seconds()
        rates = switching_flood(bench, states, [BASE, "collector"], seconds=seconds, window=1.0, entered=entered)
        cpu = collector.cpu_seconds() - cpu0
    finally:
        collector.proc.send_signal(signal.SIGCONT)
        if fd >= 0:
            os.close(fd)
        collector.stop()
        empty.cleanup()
        control.cleanup()
    print(
        f"one {seconds:g} s flood, every other second the collector (its program, its agent draining every 1 s)"
        f" or {BASE} with the agent stopped (SIGSTOP); agent CPU {cpu:.3f} s in all:"
    )
    print_ratios(window_ratios(rates, ["collector"]), {"collector": "   target >= 0.98"})


if __name__ == "__main__":
    main()
