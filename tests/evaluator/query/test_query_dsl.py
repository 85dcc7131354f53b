"""Golden query -> OpenSearch DSL fixtures for every construct, and aggregation requests.

Regenerate after a deliberate change with ``POLICYWATCH_UPDATE_GOLDEN=1 pytest tests/evaluator/query/test_query_dsl.py``
and read the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evaluator.query import QueryError, aggregation_request, compile_query, search_body, to_dsl

GOLDEN = Path(__file__).parent / "golden"

CASES: dict[str, tuple[str, str]] = {
    "empty": ("flows", ""),
    "eq_string": ("flows", "action = allow"),
    "ne_string": ("flows", "action != deny"),
    "eq_int": ("flows", "dest_port = 5432"),
    "lt": ("dns", "count < 10"),
    "lte": ("dns", "count <= 10"),
    "gt": ("dns", "count > 100"),
    "gte": ("dns", "count >= 100"),
    "date_range": ("flows", 'start_time >= "2024-01-02 03:04:05"'),
    "date_eq": ("audit", 'stageTimestamp = "2024-01-02T03:04:05.5+01:00"'),
    "date_in": ("dns", 'end_time NOTIN {"2024-01-02", "2024-01-03"}'),
    "ip_term": ("flows", 'source_ip = "192.0.2.1"'),
    "cidr_term": ("flows", 'source_ip = "10.1.2.3/8"'),
    "ipv6_cidr_ne": ("flows", 'dest_ip != "2001:db8::1:2:3:4/64"'),
    "multi_ip": ("audit", 'sourceIPs = "198.51.100.0/24"'),
    "and": ("dns", "count > 100 AND client_name = mypod"),
    "or": ("dns", "client_namespace = ns1 OR client_namespace = ns2"),
    "not": ("dns", "count > 100 AND NOT (client_namespace = ns1 OR client_namespace = ns2)"),
    "nested_groups": ("dns", "(qtype = A OR qtype = AAAA) AND rcode != NoError"),
    "in_terms": ("flows", "dest_port IN {80, 443, 8080}"),
    "in_single": ("flows", 'source_namespace IN {"kube-system"}'),
    "in_wildcards": ("dns", 'qname IN {"*.example.com", www.example.org, "api?.example.net"}'),
    "notin_wildcards": ("flows", 'source_name_aggr NOTIN {"nginx-*", redis}'),
    "in_enum_pattern": ("audit", "verb IN {*te}"),
    "nested_source_labels": ("flows", 'source_labels.labels = "app=frontend"'),
    "nested_dest_labels_ne": ("flows", 'dest_labels.labels != "application=postgres"'),
    "nested_dest_labels_in": ("flows", 'dest_labels.labels IN {"app=*", "tier=db"}'),
    "nested_policies": ("flows", 'policies.all_policies = "0|tier1|tier1.allow-dns|allow"'),
    "nested_servers_ip": ("dns", '"servers.ip" = "127.0.0.1"'),
    "nested_servers_label": ("dns", '"servers.labels.k8s-app" = "kube-dns"'),
    "nested_rrsets_type": ("dns", "rrsets.type IN {A, AAAA}"),
    "nested_rrsets_rdata": ("dns", 'rrsets.rdata = "93.184.216.34"'),
    "client_label": ("dns", "client_labels.app = frontend"),
    "dns_type_number": ("dns", 'qtype = "#65"'),
    "proto_number": ("flows", "proto = 17"),
    "audit_nested_keys": ("audit", 'objectRef.resource = pods AND user.groups = "system:masters"'),
    "postgres_example": (
        "flows",
        'dest_labels.labels="application=postgres" AND source_type=net AND action=allow '
        "AND proto=tcp AND dest_port=5432",
    ),
}


def compiled(dataset: str, query: str) -> dict[str, Any]:
    return to_dsl(compile_query(query, dataset), dataset)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_dsl(name: str) -> None:
    dataset, query = CASES[name]
    path = GOLDEN / f"{name}.json"
    actual = {"dataset": dataset, "query": query, "dsl": compiled(dataset, query)}
    if os.environ.get("POLICYWATCH_UPDATE_GOLDEN"):
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert json.loads(path.read_text()) == actual


def test_no_stale_golden_files() -> None:
    assert sorted(path.stem for path in GOLDEN.glob("*.json")) == sorted(CASES)


def test_time_range_wraps_the_query() -> None:
    start = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    end = datetime(2024, 1, 2, 3, 14, 5, tzinfo=UTC)
    window = {"range": {"end_time": {"gte": "2024-01-02T03:04:05Z", "lt": "2024-01-02T03:14:05Z"}}}
    window["range"]["end_time"]["format"] = "strict_date_optional_time"
    assert to_dsl(None, "flows", start=start, end=end) == {"bool": {"filter": [window]}}
    expr = compile_query("action = deny", "flows")
    assert to_dsl(expr, "flows", start=start, end=end) == {"bool": {"filter": [{"term": {"action": "deny"}}, window]}}
    audit = to_dsl(None, "audit", start=start)
    assert audit == {
        "bool": {
            "filter": [
                {
                    "range": {
                        "requestReceivedTimestamp": {
                            "gte": "2024-01-02T03:04:05Z",
                            "format": "strict_date_optional_time",
                        }
                    }
                }
            ]
        }
    }


def test_composite_aggregation_with_metric_and_paging() -> None:
    body = aggregation_request("flows", ["source_namespace", "source_ip"], "sum", "bytes_in", 100, None)
    assert body == {
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "aggregate": {
                "composite": {
                    "size": 100,
                    "sources": [
                        {"source_namespace": {"terms": {"field": "source_namespace", "missing_bucket": True}}},
                        {"source_ip": {"terms": {"field": "source_ip", "missing_bucket": True}}},
                    ],
                },
                "aggs": {"metric": {"sum": {"field": "bytes_in"}}},
            }
        },
    }
    after = {"source_namespace": "ns1", "source_ip": "10.0.0.1"}
    page2 = aggregation_request("flows", ["source_namespace", "source_ip"], "sum", "bytes_in", 100, after)
    assert page2["aggs"]["aggregate"]["composite"]["after"] == after


def test_count_uses_doc_count_and_total_hits() -> None:
    by_key = aggregation_request("dns", ["qname"], "count", None, 10, None)
    assert "aggs" not in by_key["aggs"]["aggregate"]
    assert aggregation_request("dns", [], "count", None, 10, None) == {"size": 0, "track_total_hits": True}
    assert aggregation_request("dns", [], "max", "count", 10, None) == {
        "size": 0,
        "track_total_hits": True,
        "aggs": {"metric": {"max": {"field": "count"}}},
    }
    assert aggregation_request("dns", [], None, None, 25, None) == {
        "size": 25,
        "track_total_hits": True,
        "sort": [{"end_time": {"order": "desc"}}],
    }


def test_search_body_combines_query_and_aggregation() -> None:
    expr = compile_query("action = deny", "flows")
    body = search_body(expr, "flows", aggregate_by=["dest_ip"], metric="avg", field="packets_in", size=5)
    assert body["query"] == {"term": {"action": "deny"}}
    assert body["aggs"]["aggregate"]["aggs"] == {"metric": {"avg": {"field": "packets_in"}}}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("flows", ["client_namespace"], None, None), 'did you mean "source_namespace"'),
        (("flows", "source_ip", None, None), "must be a list"),
        (("flows", ["policies.all_policies"], None, None), "holds many values"),
        (("flows", [], "sum", None), "needs a field"),
        (("flows", [], "sum", "count"), 'did you mean "num_flows"'),
        (("flows", [], "sum", "action"), "needs a numeric field"),
        (("flows", [], "median", "bytes_in"), "unknown metric"),
        (("dns", ["qname"], "count", None, 0), "page size"),
    ],
)
def test_aggregation_errors(args: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(QueryError) as info:
        aggregation_request(*args)
    assert needle in str(info.value)
