"""The collector's own metrics, served on ``/collector/metrics`` and never mixed into ``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


class BpfStatsCollector:
    """Program recursion misses, and run time and count while kernel.bpf_stats_enabled=1, from the kernel."""

    def __init__(
        self,
        stats: Callable[[], tuple[int, int] | None],
        *,
        recursion_misses: Callable[[], int | None] = lambda: None,
        sysctl: Path = BPF_STATS_SYSCTL,
    ) -> None:
        self._stats = stats
        self._misses = recursion_misses
        self._sysctl = sysctl

    def collect(self) -> Iterable[Metric]:
        families: list[Metric] = []
        misses = self._misses()
        if misses is not None:
            missed = CounterMetricFamily(
                "policywatch_collector_bpf_recursion_misses",
                "kfree_skb events the kernel did not run the program for, because it was already running on that "
                "CPU (a nested drop); expected to stay 0.",
            )
            missed.add_metric((), misses)
            families.append(missed)
        try:
            enabled = self._sysctl.read_text().strip() == "1"
        except OSError:
            enabled = False
        stats = self._stats() if enabled else None
        if stats is None:
            return families
        run_ns, runs = stats
        time_total = CounterMetricFamily(
            "policywatch_collector_bpf_run_time_seconds",
            "Time the kernel spent in the kfree_skb program while kernel.bpf_stats_enabled=1.",
        )
        time_total.add_metric((), run_ns / 1e9)
        count_total = CounterMetricFamily(
            "policywatch_collector_bpf_run_count",
            "Runs of the kfree_skb program counted while kernel.bpf_stats_enabled=1.",
        )
        count_total.add_metric((), runs)
        return [*families, time_total, count_total]


class Health:
    def __init__(
        self,
        *,
        version: str,
        kernel: str,
        bpf_stats: Callable[[], tuple[int, int] | None] = lambda: None,
        recursion_misses: Callable[[], int | None] = lambda: None,
        registry: CollectorRegistry | None = None,
        sysctl: Path = BPF_STATS_SYSCTL,
        started_at: float | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.drain_duration = Histogram(
            "policywatch_collector_drain_duration_seconds",
            "Time one drain of the BPF maps took (swap, read, delete, add to series).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.map_entries = Gauge(
            "policywatch_collector_map_entries", "Entries the last drain read from the BPF counting map.", registry=r
        )
        self.series = Gauge("policywatch_collector_series", "Denied-packet series currently exported.", registry=r)
        self.overflow_packets = Counter(
            "policywatch_collector_overflow_packets",
            'Drops counted under a srcIP="overflow" series (BPF map full or over --max-series).',
            registry=r,
        )
        self.flow_overflow_packets = Counter(
            "policywatch_collector_flow_overflow_packets",
            "Drops counted in a per-policy overflow flow record because the BPF flow map was full (--flow-logs).",
            registry=r,
        )
        self.ruleset_refreshes = Counter(
            "policywatch_collector_ruleset_refreshes",
            "Rebuilds of the mark -> policy table after an nftables ruleset changed.",
            registry=r,
        )
        self.policy_conflicts = Gauge(
            "policywatch_collector_policy_conflicts",
            "Mark ids bound to more than one rule comment in the current rulesets.",
            registry=r,
        )
        self.unattributed_drops = Counter(
            "policywatch_collector_unattributed_drops",
            "Netfilter drops no policy made (no mark under the mask: conntrack INVALID, fib, a chain's policy drop, "
            "kube-proxy's 0x8000), per network namespace; not in the /metrics series unless --export-unmarked.",
            ("namespace",),
            registry=r,
        )
        self.unattributed_bytes = Counter(
            "policywatch_collector_unattributed_bytes",
            "Bytes of policywatch_collector_unattributed_drops_total, per network namespace.",
            ("namespace",),
            registry=r,
        )
        start_time = Gauge(
            "policywatch_collector_start_time_seconds",
            "When this collector process started (Unix time): a restart, not a reset, when totals continue.",
            registry=r,
        )
        start_time.set(started_at if started_at is not None else time.time())
        build_info = Gauge(
            "policywatch_collector_build_info",
            "Collector version and kernel release.",
            ("version", "kernel"),
            registry=r,
        )
        build_info.labels(version, kernel).set(1)
        r.register(BpfStatsCollector(bpf_stats, recursion_misses=recursion_misses, sysctl=sysctl))
