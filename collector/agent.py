"""The drain loop: BPF maps -> policy names -> expiring series, plus the collector's health figures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from collector.bpf_loader import Drained, DropCount, DropSource
from collector.flowlogs import FlowKey, FlowLogs
from collector.health import Health
from collector.policies import NamespaceNames, PolicyResolver
from collector.series import OVERFLOW_SOURCE, SeriesStore

log = logging.getLogger(__name__)

# Drops the BPF program could place in neither its counting map nor its per-policy overflow map.
UNATTRIBUTED = "unattributed"
# An unknown mark triggers an early ruleset read, but not more often than this.
UNKNOWN_MARK_REREAD = 0.5


class Agent:
    def __init__(
        self,
        *,
        source: DropSource,
        store: SeriesStore,
        resolver: PolicyResolver,
        health: Health,
        ruleset_refresh: float,
        export_unmarked: bool = False,
        persist: Callable[[], None] = lambda: None,
        flow_logs: FlowLogs | None = None,
    ) -> None:
        self._source = source
        self._store = store
        self._resolver = resolver
        self._health = health
        self._ruleset_refresh = ruleset_refresh
        self._export_unmarked = export_unmarked
        self._persist = persist
        self._flow_logs = flow_logs
        self._unknown_checked: set[tuple[int, int]] = set()
        self._capped_seen = 0

    def tick(self) -> None:
        """One drain: read the BPF maps, label each count, add it to its series, persist, empty the maps."""
        started = time.perf_counter()
        drained = self._source.drain()
        drain_time = time.perf_counter() - started
        # a ruleset read (every --ruleset-refresh) is not part of the drain time
        before = self._resolver.last_read
        self._resolver.refresh_if_older(self._ruleset_refresh)
        periodic = self._resolver.last_read != before
        if periodic:
            self._unknown_checked.clear()  # unknown marks may trigger one early read again
        keys = {(d.policy_id, d.netns) for d in drained.drops} | {(d.policy_id, d.netns) for d in drained.overflow}
        keys |= {(f.policy_id, f.netns) for f in drained.flows}
        unknown = {k for k in keys if not self._resolver.names.knows(*k)} - self._unknown_checked
        if unknown:
            # one early read per unknown mark and refresh period: a mark no rule explains must not re-read every
            # ruleset on every drain
            if not periodic:
                self._resolver.refresh_if_older(UNKNOWN_MARK_REREAD)
            if self._resolver.last_read != before:
                self._unknown_checked |= unknown
        started = time.perf_counter()
        self.add(drained)
        if drained.drops or drained.overflow or drained.unplaced_packets:
            try:
                self._persist()  # before the maps are emptied: a crash from here on loses and repeats nothing
            except OSError as exc:
                log.warning("cannot save the collector state, totals may restart from 0 after a crash: %s", exc)
        self._source.commit()
        if self._flow_logs is not None:
            self._flow_logs.tick()
        store = self._store
        store.expire()
        self._health.series.set(len(store))
        self._health.map_entries.set(drained.map_entries)
        self._health.drain_duration.observe(drain_time + time.perf_counter() - started)

    def add(self, drained: Drained) -> None:
        """Label the counts of one drain and add them to their series."""
        names = self._resolver.names
        store = self._store
        for d in drained.drops:
            if d.policy_id == 0 and not self._unattributed(d, names):
                continue
            store.add(policy=names.label(d.policy_id, d.netns), src_ip=d.src_ip, packets=d.packets, nbytes=d.bytes)
        overflow = 0
        for d in drained.overflow:
            overflow += d.packets
            if d.policy_id == 0 and not self._unattributed(d, names):
                continue
            store.add(
                policy=names.label(d.policy_id, d.netns), src_ip=OVERFLOW_SOURCE, packets=d.packets, nbytes=d.bytes
            )
        if drained.unplaced_packets:
            store.add(
                policy=UNATTRIBUTED,
                src_ip=OVERFLOW_SOURCE,
                packets=drained.unplaced_packets,
                nbytes=drained.unplaced_bytes,
            )
            overflow += drained.unplaced_packets
        if self._flow_logs is not None:
            self._add_flows(drained, names)
        capped = store.capped_packets - self._capped_seen
        self._capped_seen = store.capped_packets
        self._health.overflow_packets.inc(overflow + capped)

    def _add_flows(self, drained: Drained, names: NamespaceNames) -> None:
        """Per-flow deltas, labelled exactly as the series are; drops no policy made only with --export-unmarked."""
        assert self._flow_logs is not None
        deltas: dict[FlowKey, tuple[int, int]] = {}

        def put(key: FlowKey, packets: int, nbytes: int) -> None:
            p, b = deltas.get(key, (0, 0))
            deltas[key] = (p + packets, b + nbytes)

        for f in drained.flows:
            if f.policy_id == 0 and not self._export_unmarked:
                continue
            label = names.label(f.policy_id, f.netns)
            if f.overflow:
                put(FlowKey(label, 0, OVERFLOW_SOURCE, 0, OVERFLOW_SOURCE, 0, netns=f.netns), f.packets, f.bytes)
            else:
                key = FlowKey(label, f.proto, f.src_ip, f.src_port, f.dst_ip, f.dst_port, netns=f.netns)
                put(key, f.packets, f.bytes)
        if drained.flow_unplaced_packets:
            key = FlowKey(UNATTRIBUTED, 0, OVERFLOW_SOURCE, 0, OVERFLOW_SOURCE, 0)
            put(key, drained.flow_unplaced_packets, drained.flow_unplaced_bytes)
            self._health.flow_overflow_packets.inc(drained.flow_unplaced_packets)
        self._health.flow_overflow_packets.inc(sum(f.packets for f in drained.flows if f.overflow))
        self._flow_logs.add(deltas)

    def _unattributed(self, drop: DropCount, names: NamespaceNames) -> bool:
        """Count a drop no policy made in the health counter; True when it is exported as policy="unmarked" too."""
        namespace = names.namespace(drop.netns)
        self._health.unattributed_drops.labels(namespace).inc(drop.packets)
        self._health.unattributed_bytes.labels(namespace).inc(drop.bytes)
        return self._export_unmarked

    def run(self, *, stop: threading.Event, interval: float) -> None:
        """Drain every ``interval`` seconds until ``stop`` is set; a last drain runs before returning."""
        while not stop.wait(interval):
            try:
                self.tick()
            except OSError as exc:
                log.error("drain failed, retrying next interval: %s", exc)
        self.tick()
        if self._flow_logs is not None:
            self._flow_logs.flush()  # the last interval's records, shipped before the process exits
