"""Flow records from drain deltas: the spec's flows schema, interval arithmetic, stable ids for resent batches."""

from __future__ import annotations

import json

from collector.flowlogs import FlowAggregator, FlowKey, bulk_body, record_id
from evaluator.query import compile_query, matches

TCP = FlowKey(
    policy="demo-db/deny-postgres",
    proto=6,
    source_ip="10.77.0.1",
    source_port=40000,
    dest_ip="10.77.0.2",
    dest_port=5432,
)
PING6 = FlowKey(
    policy="ops/no-ping", proto=58, source_ip="2001:db8::1", source_port=128, dest_ip="2001:db8::2", dest_port=0
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_record_per_flow_with_the_interval_totals() -> None:
    clock = Clock()
    flows = FlowAggregator(host="node-1", clock=clock)
    flows.add({TCP: (3, 180), PING6: (1, 104)})
    clock.now += 5
    flows.add({TCP: (2, 120)})
    clock.now += 10
    records = {r["proto"]: r for r in flows.flush()}
    assert set(records) == {"tcp", "icmp6"}
    tcp = records["tcp"]
    assert tcp["start_time"] == 1_700_000_000 and tcp["end_time"] == 1_700_000_015
    assert (tcp["packets_in"], tcp["bytes_in"], tcp["packets_out"], tcp["bytes_out"]) == (5, 300, 0, 0)
    assert tcp["action"] == "deny" and tcp["reporter"] == "dst" and tcp["host"] == "node-1"
    assert (tcp["source_ip"], tcp["source_port"], tcp["dest_ip"], tcp["dest_port"]) == (
        "10.77.0.1",
        40000,
        "10.77.0.2",
        5432,
    )
    assert tcp["policies"]["all_policies"] == ["0|demo-db|demo-db/deny-postgres|deny|0"]
    assert tcp["source_type"] == tcp["dest_type"] == "net"
    assert tcp["num_flows"] == 1 and tcp["num_flows_started"] == 1
    ping = records["icmp6"]
    assert ping["source_port"] is None and ping["dest_port"] is None
    assert (ping["icmp_type"], ping["icmp_code"]) == (128, 0)
    assert flows.flush() == []


def test_a_flow_continuing_into_the_next_interval_is_not_started_again() -> None:
    clock = Clock()
    flows = FlowAggregator(host="n", clock=clock)
    flows.add({TCP: (1, 60)})
    assert flows.flush()[0]["num_flows_started"] == 1
    flows.add({TCP: (1, 60)})
    assert flows.flush()[0]["num_flows_started"] == 0
    assert flows.flush() == []  # an idle interval: the flow is forgotten
    flows.add({TCP: (1, 60)})
    assert flows.flush()[0]["num_flows_started"] == 1


def test_source_reporter_counts_outbound() -> None:
    flows = FlowAggregator(host="n", clock=Clock())
    flows.add({FlowKey("p", 17, "10.0.0.1", 1, "10.0.0.2", 53, reporter="src"): (4, 400)})
    (record,) = flows.flush()
    assert (record["packets_out"], record["bytes_out"], record["packets_in"]) == (4, 400, 0)


def test_records_match_the_queries_users_write() -> None:
    flows = FlowAggregator(host="n", clock=Clock())
    flows.add({TCP: (2, 120), PING6: (1, 104)})
    records = flows.flush()
    query = compile_query("action = deny AND dest_port = 5432", "flows")
    assert [r["proto"] for r in records if matches(query, "flows", r)] == ["tcp"]


def test_bulk_body_has_stable_ids() -> None:
    flows = FlowAggregator(host="n", clock=Clock())
    flows.add({TCP: (2, 120), PING6: (1, 104)})
    records = flows.flush()
    lines = bulk_body(records, "tigera_secure_ee_flows.cluster").decode().splitlines()
    assert len(lines) == 4
    actions = [json.loads(line) for line in lines[0::2]]
    assert [a["create"]["_index"] for a in actions] == ["tigera_secure_ee_flows.cluster"] * 2
    assert [a["create"]["_id"] for a in actions] == [record_id(r) for r in records]
    assert [json.loads(line) for line in lines[1::2]] == records
    assert record_id(dict(reversed(list(records[0].items())))) == record_id(records[0])
    assert record_id(records[0]) != record_id(records[1])
