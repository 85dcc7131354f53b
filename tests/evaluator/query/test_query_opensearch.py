"""Against a real OpenSearch (only when POLICYWATCH_TEST_OPENSEARCH_URL is set): every golden query selects
the same documents there as the Python evaluation does.

OpenSearch cannot run on the CI machines; elsewhere point the variable at a disposable cluster, e.g.
``POLICYWATCH_TEST_OPENSEARCH_URL=http://127.0.0.1:9200``. Indices created here are deleted after.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluator.query import compile_query, search_body, to_dsl
from evaluator.query.dsl import COMPOSITE, METRIC
from evaluator.query.evaluate import matches

URL = os.environ.get("POLICYWATCH_TEST_OPENSEARCH_URL")
GOLDEN = Path(__file__).parent / "golden"

pytestmark = pytest.mark.skipif(
    not URL, reason="POLICYWATCH_TEST_OPENSEARCH_URL is not set: no OpenSearch to test the DSL against"
)

KEYWORD = {"type": "keyword"}
MAPPINGS: dict[str, dict[str, Any]] = {
    "flows": {
        "start_time": {"type": "date"},
        "end_time": {"type": "date"},
        "source_ip": {"type": "ip"},
        "dest_ip": {"type": "ip"},
        "original_source_ips": {"type": "ip"},
        "dest_port": {"type": "long"},
        "bytes_in": {"type": "long"},
        "source_labels": {"type": "nested", "properties": {"labels": KEYWORD}},
        "dest_labels": {"type": "nested", "properties": {"labels": KEYWORD}},
        "policies": {"type": "nested", "properties": {"all_policies": KEYWORD}},
    },
    "dns": {
        "start_time": {"type": "date"},
        "end_time": {"type": "date"},
        "count": {"type": "long"},
        "client_ip": {"type": "ip"},
        "servers": {"type": "nested", "properties": {"ip": {"type": "ip"}}},
        "rrsets": {"type": "nested"},
    },
    "audit": {
        "requestReceivedTimestamp": {"type": "date"},
        "sourceIPs": {"type": "ip"},
        "responseStatus": {"properties": {"code": {"type": "long"}}},
    },
}
T0, T1 = "2024-03-01T10:00:00Z", "2024-03-01T10:05:00Z"
DOCS: dict[str, list[dict[str, Any]]] = {
    "flows": [
        {
            "start_time": T0,
            "end_time": T1,
            "action": "allow",
            "source_ip": "10.1.2.3",
            "dest_ip": "2001:db8::1:2:3:5",
            "dest_port": 5432,
            "bytes_in": 10,
            "proto": "tcp",
            "source_type": "net",
            "source_namespace": "kube-system",
            "source_name_aggr": "nginx-*",
            "dest_labels": {"labels": ["application=postgres", "tier=db"]},
            "source_labels": {"labels": ["app=frontend"]},
            "policies": {"all_policies": ["0|tier1|tier1.allow-dns|allow"]},
        },
        {
            "start_time": T0,
            "end_time": T1,
            "action": "deny",
            "source_ip": "192.0.2.1",
            "dest_port": 80,
            "proto": "udp",
            "source_name_aggr": "redis",
            "dest_labels": {"labels": ["app=web"]},
        },
        {"start_time": "2024-01-02T03:04:05Z", "end_time": T1, "proto": "udp", "dest_port": 443},
    ],
    "dns": [
        {
            "end_time": T1,
            "count": 150,
            "client_name": "mypod",
            "client_namespace": "ns1",
            "client_labels": {"app": "frontend"},
            "qname": "www.example.org",
            "qtype": "AAAA",
            "rcode": "NXDomain",
            "servers": [{"ip": "127.0.0.1", "labels": {"k8s-app": "kube-dns"}}],
            "rrsets": [{"name": "a.example.com", "type": "A", "rdata": ["93.184.216.34"]}],
        },
        {"end_time": T1, "count": 5, "client_namespace": "ns3", "qname": "api1.example.net", "qtype": "#65"},
    ],
    "audit": [
        {
            "requestReceivedTimestamp": T0,
            "verb": "create",
            "sourceIPs": ["198.51.100.7"],
            "objectRef": {"resource": "pods"},
            "user": {"groups": ["system:masters"]},
        },
        {"requestReceivedTimestamp": T0, "verb": "get", "sourceIPs": ["203.0.113.9"]},
    ],
}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from opensearchpy import OpenSearch

    client = OpenSearch(URL, timeout=30)
    prefix = f"policywatch-test-{secrets.token_hex(4)}"
    try:
        for dataset, docs in DOCS.items():
            index = f"{prefix}-{dataset}"
            # Like Calico's indices: strings are keywords (exact terms, aggregatable).
            strings = {"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}
            mappings = {"dynamic_templates": [strings], "properties": MAPPINGS[dataset]}
            client.indices.create(index, body={"mappings": mappings})
            for number, doc in enumerate(docs):
                client.index(index, body=doc, id=str(number))
            client.indices.refresh(index)
        client.policywatch_prefix = prefix
        yield client
    finally:
        client.indices.delete(f"{prefix}-*", ignore_unavailable=True)
        client.close()


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda path: path.stem)
def test_golden_query_selects_what_python_selects(client: Any, path: Path) -> None:
    case = json.loads(path.read_text())
    dataset, text = case["dataset"], case["query"]
    expr = compile_query(text, dataset)
    index = f"{client.policywatch_prefix}-{dataset}"
    response = client.search(index=index, body={"query": to_dsl(expr, dataset), "size": 100})
    found = {hit["_id"] for hit in response["hits"]["hits"]}
    expected = {str(number) for number, doc in enumerate(DOCS[dataset]) if matches(expr, dataset, doc)}
    assert found == expected, text


def test_composite_aggregation_pages_and_sums(client: Any) -> None:
    index = f"{client.policywatch_prefix}-flows"
    expected: dict[str | None, int] = {}
    for doc in DOCS["flows"]:
        key = doc.get("action")
        expected[key] = expected.get(key, 0) + int(doc.get("bytes_in", 0))
    found: dict[str | None, int] = {}
    after = None
    while True:
        body = search_body(
            None, "flows", aggregate_by=["action"], metric="sum", field="bytes_in", size=1, after_key=after
        )
        response = client.search(index=index, body=body)
        aggregation = response["aggregations"][COMPOSITE]
        for bucket in aggregation["buckets"]:
            found[bucket["key"]["action"]] = int(bucket[METRIC]["value"])
        after = aggregation.get("after_key")
        if not aggregation["buckets"] or after is None:
            break
    assert found == expected
    counted = client.search(index=index, body=search_body(None, "flows", metric="count"))
    assert counted["hits"]["total"]["value"] == len(DOCS["flows"])
