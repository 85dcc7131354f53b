"""Drain arithmetic: counts from a fake drop source, labelled and added to series, health figures kept."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from collector.agent import UNATTRIBUTED, Agent
from collector.bpf_loader import Drained, DropCount
from collector.health import Health
from collector.policies import PolicyResolver
from collector.rulesets import Ruleset
from collector.series import SeriesStore

HOST, NS = 4026531840, 4026532999  # namespace inodes, as the BPF program reports them


def rule_json(mark: int, comment: str) -> str:
    return (
        '{"nftables": [{"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter", "hook": "input", '
        '"prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 1, '
        f'"comment": "{comment}", "expr": [{{"mangle": {{"key": {{"meta": {{"key": "mark"}}}}, "value": {mark}}}}}, '
        '{"drop": null}]}}]}'
    )


class FakeReader:
    def __init__(self, *rulesets: Ruleset) -> None:
        self.rulesets = list(rulesets)
        self.reads = 0

    def read_all(self) -> list[Ruleset]:
        self.reads += 1
        return list(self.rulesets)


class FakeSource:
    def __init__(self, *batches: Drained) -> None:
        self.batches = list(batches)
        self.commits = 0

    def drain(self) -> Drained:
        return self.batches.pop(0) if self.batches else Drained()

    def commit(self) -> None:
        self.commits += 1

    def bpf_stats(self) -> tuple[int, int] | None:
        return (2000, 50)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(
    source: FakeSource, reader: FakeReader, *, max_series: int = 100, export_unmarked: bool = False
) -> tuple[Agent, SeriesStore, Health, Clock]:
    clock = Clock()
    store = SeriesStore(ttl=60, max_series=max_series, clock=clock)
    health = Health(version="t", kernel="k", bpf_stats=source.bpf_stats, registry=CollectorRegistry())

    def rebuilt(names: object) -> None:
        health.ruleset_refreshes.inc()

    resolver = PolicyResolver(mask=0xFF, reader=reader, clock=clock, on_rebuild=rebuilt)
    agent = Agent(
        source=source,
        store=store,
        resolver=resolver,
        health=health,
        ruleset_refresh=2.0,
        export_unmarked=export_unmarked,
    )
    return agent, store, health, clock


def totals(store: SeriesStore) -> dict[tuple[str, str], tuple[int, int]]:
    return {(s.policy, s.src_ip): (s.packets, s.bytes) for s in store.samples()}


def test_drains_add_up_per_policy_and_source() -> None:
    source = FakeSource(
        Drained(
            drops=[
                DropCount(1, "10.0.0.1", 3, 180, HOST),
                DropCount(2, "fd00::1", 1, 80, NS),
                DropCount(0, "10.0.0.2", 2, 2, NS),
            ],
            map_entries=3,
        ),
        Drained(drops=[DropCount(1, "10.0.0.1", 4, 240, HOST), DropCount(9, "10.0.0.1", 1, 60, HOST)], map_entries=2),
    )
    agent, store, health, clock = make(
        source, FakeReader(Ruleset("host", rule_json(1, "deny-a"), HOST), Ruleset("ns", rule_json(2, "deny-b"), NS))
    )
    agent.tick()
    clock.now += 1
    agent.tick()
    assert totals(store) == {
        ("deny-a", "10.0.0.1"): (7, 420),
        ("deny-b", "fd00::1"): (1, 80),
        ("mark/0x9", "10.0.0.1"): (1, 60),
    }
    r = health.registry
    # no policy made the unmarked drop: the health counter has it, calico_denied_* does not
    assert r.get_sample_value("policywatch_collector_unattributed_drops_total", {"namespace": "ns"}) == 2
    assert r.get_sample_value("policywatch_collector_unattributed_bytes_total", {"namespace": "ns"}) == 2
    assert r.get_sample_value("policywatch_collector_map_entries") == 2
    assert r.get_sample_value("policywatch_collector_series") == 3
    assert r.get_sample_value("policywatch_collector_drain_duration_seconds_count") == 2
    assert r.get_sample_value("policywatch_collector_ruleset_refreshes_total") == 1  # unchanged text: no rebuild


def test_export_unmarked_keeps_the_unmarked_series_and_the_counter() -> None:
    source = FakeSource(Drained(drops=[DropCount(0, "10.0.0.2", 2, 56, NS), DropCount(0, "10.0.0.3", 1, 28, 77)]))
    agent, store, health, _ = make(source, FakeReader(Ruleset("ns", rule_json(2, "deny-b"), NS)), export_unmarked=True)
    agent.tick()
    assert totals(store) == {("unmarked", "10.0.0.2"): (2, 56), ("unmarked", "10.0.0.3"): (1, 28)}
    r = health.registry
    assert r.get_sample_value("policywatch_collector_unattributed_drops_total", {"namespace": "ns"}) == 2
    # a namespace the collector cannot name is labelled by its inode
    assert r.get_sample_value("policywatch_collector_unattributed_drops_total", {"namespace": "netns:77"}) == 1


def test_a_mark_is_named_only_from_its_own_namespace() -> None:
    source = FakeSource(Drained(drops=[DropCount(2, "10.0.0.1", 1, 28, HOST), DropCount(2, "10.0.0.1", 1, 28, NS)]))
    agent, store, _, _ = make(source, FakeReader(Ruleset("host", "{}", HOST), Ruleset("ns", rule_json(2, "b"), NS)))
    agent.tick()
    assert totals(store) == {("mark/0x2", "10.0.0.1"): (1, 28), ("b", "10.0.0.1"): (1, 28)}


def test_overflow_unplaced_and_capped_drops_are_all_counted() -> None:
    source = FakeSource(
        Drained(
            drops=[DropCount(1, f"10.0.0.{i}", 1, 100, HOST) for i in range(4)],
            overflow=[DropCount(1, "overflow", 10, 1000, HOST), DropCount(2, "overflow", 5, 500, HOST)],
            unplaced_packets=2,
            unplaced_bytes=200,
        )
    )
    agent, store, health, _ = make(source, FakeReader(Ruleset("host", rule_json(1, "deny-a"), HOST)), max_series=3)
    agent.tick()
    t = totals(store)
    assert t[("deny-a", "overflow")] == (11, 1100)  # 10 from the BPF overflow map + 1 over --max-series
    assert t[("mark/0x2", "overflow")] == (5, 500)
    assert t[(UNATTRIBUTED, "overflow")] == (2, 200)
    assert sum(p for p, _ in t.values()) == 4 + 10 + 5 + 2
    assert health.registry.get_sample_value("policywatch_collector_overflow_packets_total") == 10 + 5 + 2 + 1


def test_renamed_rule_and_new_mark_are_picked_up_without_restart() -> None:
    reader = FakeReader(Ruleset("host", rule_json(1, "old-name"), HOST))
    source = FakeSource(
        Drained(drops=[DropCount(1, "10.0.0.1", 1, 1, HOST)]),
        Drained(drops=[DropCount(1, "10.0.0.1", 1, 1, HOST)]),
        Drained(drops=[DropCount(3, "10.0.0.1", 1, 1, NS)]),
    )
    agent, store, _, clock = make(source, reader)
    agent.tick()
    reader.rulesets = [Ruleset("host", rule_json(1, "new-name"), HOST)]
    clock.now += 2.0  # the periodic re-read is due
    agent.tick()
    assert set(totals(store)) == {("old-name", "10.0.0.1"), ("new-name", "10.0.0.1")}
    reader.rulesets.append(Ruleset("ns2", rule_json(3, "fresh"), NS))
    clock.now += 0.5  # periodic re-read not due, but an unknown mark triggers one
    agent.tick()
    assert ("fresh", "10.0.0.1") in totals(store)


def test_a_persistently_unknown_mark_rereads_once_per_refresh_period() -> None:
    reader = FakeReader(Ruleset("host", rule_json(1, "a"), HOST))
    unknown = Drained(drops=[DropCount(0x3E, "10.0.0.1", 1, 1, HOST)])
    source = FakeSource(Drained(drops=[DropCount(1, "10.0.0.1", 1, 1, HOST)]), *[unknown] * 6)
    agent, store, _, clock = make(source, reader)
    agent.tick()  # the start read
    for _ in range(4):
        clock.now += 0.3  # past the early re-read's 0.5 s after two drains, short of the 2 s refresh
        agent.tick()
    assert reader.reads == 2  # the start read, then one early read for the new mark; not one per drain
    clock.now += 2.0
    agent.tick()  # the periodic read, the mark still unknown after it
    agent.tick()
    assert reader.reads == 3
    assert totals(store) == {("a", "10.0.0.1"): (1, 1), ("mark/0x3e", "10.0.0.1"): (6, 6)}


def test_run_stops_on_event_after_a_last_drain() -> None:
    source = FakeSource(Drained(drops=[DropCount(1, "10.0.0.1", 1, 1)]))
    agent, store, _, _ = make(source, FakeReader())
    stop = threading.Event()
    stop.set()
    agent.run(stop=stop, interval=10)
    assert len(store) == 1


def test_bpf_stats_only_when_enabled(tmp_path: object) -> None:
    from pathlib import Path

    sysctl = Path(str(tmp_path)) / "bpf_stats_enabled"
    sysctl.write_text("0\n")
    health = Health(
        version="v",
        kernel="k",
        bpf_stats=lambda: (3_000_000_000, 7),
        recursion_misses=lambda: 2,
        registry=CollectorRegistry(),
        sysctl=sysctl,
    )
    assert health.registry.get_sample_value("policywatch_collector_bpf_run_count_total") is None
    assert health.registry.get_sample_value("policywatch_collector_bpf_recursion_misses_total") == 2
    sysctl.write_text("1\n")
    assert health.registry.get_sample_value("policywatch_collector_bpf_run_count_total") == 7
    assert health.registry.get_sample_value("policywatch_collector_bpf_run_time_seconds_total") == 3.0
    assert health.registry.get_sample_value("policywatch_collector_build_info", {"version": "v", "kernel": "k"}) == 1


def test_flows_are_labelled_like_the_series_and_flushed_per_interval() -> None:
    from typing import Any

    from collector.bpf_loader import FlowCount
    from collector.flowlogs import FlowAggregator, FlowLogs

    flows = [
        FlowCount(1, HOST, 6, "10.0.0.1", 40000, "10.0.0.9", 5432, 2, 120),
        FlowCount(1, HOST, 0, "", 0, "", 0, 5, 300, overflow=True),
        FlowCount(0, NS, 17, "10.0.0.2", 1, "10.0.0.9", 53, 1, 40),  # no policy made it: not a flow record
    ]
    source = FakeSource(Drained(flows=flows), Drained(flows=flows[:1]))
    agent, _store, health, clock = make(source, FakeReader(Ruleset("host", rule_json(1, "default/deny-pg"), HOST)))
    shipped: list[dict[str, Any]] = []

    class Sink:
        def offer(self, records: Any) -> None:
            shipped.extend(records)

    agent._flow_logs = FlowLogs(
        aggregator=FlowAggregator(host="node-1", clock=clock), sink=Sink(), flush_interval=15, clock=clock
    )
    agent.tick()
    clock.now += 10
    agent.tick()
    assert shipped == []  # within one flush interval
    clock.now += 5
    agent.tick()  # nothing new drained; the interval's records go out
    by_port = {(r["source_ip"], r["dest_port"]): r for r in shipped}
    assert set(by_port) == {("10.0.0.1", 5432), (None, None)}
    pg = by_port[("10.0.0.1", 5432)]
    assert (pg["packets_in"], pg["bytes_in"], pg["proto"], pg["host"]) == (4, 240, "tcp", "node-1")
    assert pg["policies"]["all_policies"] == ["0|default|default/deny-pg|deny|0"]
    assert (pg["start_time"], pg["end_time"], pg["num_flows_started"]) == (0, 15, 1)
    assert by_port[(None, None)]["packets_in"] == 5 and by_port[(None, None)]["proto"] is None
    assert health.flow_overflow_packets._value.get() == 5
