"""The OpenSearch log store: the exact requests it sends (golden bodies), composite paging with
after_key, and shard failures / timeouts as errors. OpenSearch cannot run on these machines: the
responses below are recorded shapes; ``test_against_a_real_opensearch`` runs where
POLICYWATCH_TEST_OPENSEARCH_URL points at one."""

from __future__ import annotations

import base64
import json
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from pydantic import SecretStr, ValidationError

from devstack.services import free_port
from evaluator.engine.config import EngineSettings
from evaluator.engine.execute import run
from evaluator.engine.model import BucketCapReached, StoreError, Window
from evaluator.engine.opensearch import OpenSearchLogStore
from evaluator.engine.opensearch_events import OpenSearchEventStore
from evaluator.engine.runtime import opensearch_client
from evaluator.events import Event, EventQuery
from evaluator.query import compile_query
from tests.evaluator.engine.engine_data import flow
from tests.evaluator.engine.engine_helpers import T0, spec

WINDOW = Window.ending_at(T0, timedelta(minutes=10))
RANGE = {
    "range": {
        "end_time": {"gt": "2026-01-01T11:50:00Z", "lte": "2026-01-01T12:00:00Z", "format": "strict_date_optional_time"}
    }
}
OK_SHARDS = {"total": 3, "successful": 3, "failed": 0}


class RecordedOpenSearch:
    """Answers search/scroll with the next recorded response and keeps every request."""

    def __init__(self, responses: list[Any]) -> None:
        self.responses = list(responses)
        self.requests: list[dict[str, Any]] = []
        self.cleared: list[str] = []

    def search(self, *, index: str, body: dict[str, Any], **params: Any) -> Any:
        self.requests.append({"index": index, "body": body, **params})
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def scroll(self, *, scroll_id: str, **params: Any) -> Any:
        self.requests.append({"scroll_id": scroll_id})
        return self.responses.pop(0)

    def clear_scroll(self, *, scroll_id: str) -> None:
        self.cleared.append(scroll_id)


def page(buckets: list[tuple[str, int, float]], after: str | None) -> dict[str, Any]:
    agg: dict[str, Any] = {
        "buckets": [{"key": {"source_namespace": k}, "doc_count": n, "metric": {"value": v}} for k, n, v in buckets]
    }
    if after is not None:
        agg["after_key"] = {"source_namespace": after}
    return {
        "timed_out": False,
        "_shards": OK_SHARDS,
        "hits": {"total": {"value": 99}},
        "aggregations": {"aggregate": agg},
    }


SUM_BY_NS = spec(
    description="${source_namespace}: ${sum}",
    query="action = deny",
    aggregateBy=("source_namespace",),
    field="bytes_in",
    metric="sum",
    condition="gte",
    threshold=10.0,
)


def test_composite_pages_follow_after_key_and_the_request_is_exact() -> None:
    client = RecordedOpenSearch(
        [page([("a", 1, 5.0), ("b", 2, 50.0)], "b"), page([("c", 3, 10.0)], "c"), page([], None)]
    )
    store = OpenSearchLogStore(client, page_size=2)
    result = run(SUM_BY_NS, WINDOW, store)
    assert [(f.record, f.description) for f in result.findings] == [
        ({"source_namespace": "b", "sum": 50.0}, "b: 50"),
        ({"source_namespace": "c", "sum": 10.0}, "c: 10"),
    ]
    first = client.requests[0]
    assert first["index"] == "tigera_secure_ee_flows.cluster.*"
    assert first["body"] == {
        "query": {"bool": {"filter": [{"term": {"action": "deny"}}, RANGE]}},
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "aggregate": {
                "composite": {
                    "size": 2,
                    "sources": [{"source_namespace": {"terms": {"field": "source_namespace", "missing_bucket": True}}}],
                },
                "aggs": {"metric": {"sum": {"field": "bytes_in"}}},
            }
        },
    }
    assert [r["body"]["aggs"]["aggregate"]["composite"].get("after") for r in client.requests] == [
        None,
        {"source_namespace": "b"},
        {"source_namespace": "c"},
    ]


def test_the_bucket_cap_stops_paging_and_is_an_error() -> None:
    client = RecordedOpenSearch([page([("a", 1, 50.0), ("b", 1, 50.0)], "b"), page([("c", 1, 50.0)], "c")])
    with pytest.raises(BucketCapReached):
        run(SUM_BY_NS, WINDOW, OpenSearchLogStore(client, page_size=2), bucket_cap=2)
    assert client.requests[1]["body"]["aggs"]["aggregate"]["composite"]["size"] == 1  # asked only for cap + 1


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            {
                "timed_out": False,
                "_shards": {
                    "total": 3,
                    "successful": 2,
                    "failed": 1,
                    "failures": [{"reason": {"reason": "node gone"}}],
                },
            },
            "1 of 3 shards failed: node gone",
        ),
        ({"timed_out": True, "_shards": OK_SHARDS}, "timed out"),
        (ConnectionError("connection refused"), "connection refused"),
    ],
)
def test_partial_or_failed_answers_are_errors_never_no_data(response: Any, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        run(SUM_BY_NS, WINDOW, OpenSearchLogStore(RecordedOpenSearch([response])))


def test_metric_without_aggregation_and_per_hit_scroll() -> None:
    client = RecordedOpenSearch(
        [
            {
                "timed_out": False,
                "_shards": OK_SHARDS,
                "hits": {"total": {"value": 7}},
                "aggregations": {"metric": {"value": None}},
            }
        ]
    )
    total = spec(description="${sum}", aggregateBy=(), field="bytes_in", metric="sum", condition="gte", threshold=0.0)
    assert [f.record for f in run(total, WINDOW, OpenSearchLogStore(client)).findings] == [{"sum": 0.0}]
    assert client.requests[0]["body"]["size"] == 0
    hit = {"_index": "flows-1", "_id": "x1", "_source": flow(T0 - timedelta(minutes=1))}
    client = RecordedOpenSearch(
        [
            {"timed_out": False, "_shards": OK_SHARDS, "_scroll_id": "s1", "hits": {"hits": [hit]}},
            {"timed_out": False, "_shards": OK_SHARDS, "_scroll_id": "s1", "hits": {"hits": []}},
        ]
    )
    per_hit = spec(description="hit", aggregateBy=(), metric=None, condition=None, threshold=None)
    result = run(per_hit, WINDOW, OpenSearchLogStore(client))
    assert [(f.key, f.hit_time) for f in result.findings] == [("hit:flows-1/x1", T0 - timedelta(minutes=1))]
    assert client.requests[0]["body"]["sort"] == [{"end_time": {"order": "asc"}}, "_doc"]
    assert client.cleared == ["s1"]


@pytest.mark.skipif(
    not os.environ.get("POLICYWATCH_TEST_OPENSEARCH_URL"),
    reason="no OpenSearch here (set POLICYWATCH_TEST_OPENSEARCH_URL to run against one)",
)
def test_against_a_real_opensearch() -> None:
    client = OpenSearch(hosts=[os.environ["POLICYWATCH_TEST_OPENSEARCH_URL"]], timeout=30)
    index = f"pwtest-flows-{secrets.token_hex(4)}"
    client.indices.create(
        index=index,
        body={
            "mappings": {
                "properties": {
                    "end_time": {"type": "date"},
                    "source_namespace": {"type": "keyword"},
                    "action": {"type": "keyword"},
                    "bytes_in": {"type": "long"},
                }
            }
        },
    )
    try:
        for i, ns in enumerate(["a", "b", "b", "c"]):
            doc = {
                "end_time": (T0 - timedelta(minutes=1)).isoformat(),
                "source_namespace": ns,
                "action": "deny",
                "bytes_in": 10 * (i + 1),
            }
            client.index(index=index, body=doc, refresh=True)
        store = OpenSearchLogStore(client, indices={"flows": index}, page_size=1)
        found = {f.record["source_namespace"]: f.value for f in run(SUM_BY_NS, WINDOW, store).findings}
        assert found == {"a": 10.0, "b": 50.0, "c": 40.0}
        assert compile_query("action = deny", "flows") is not None
    finally:
        client.indices.delete(index=index)


class RecordedEventIndex:
    def __init__(self, bulk_statuses: list[int], search_response: dict[str, Any] | None = None) -> None:
        self.bulk_statuses = bulk_statuses
        self.search_response = search_response
        self.bodies: list[Any] = []

    def bulk(self, *, body: str, **params: Any) -> dict[str, Any]:
        self.bodies.append(body)
        return {"items": [{"create": {"status": s, "error": {"reason": f"status {s}"}}} for s in self.bulk_statuses]}

    def search(self, *, index: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        self.bodies.append(body)
        assert self.search_response is not None
        return self.search_response


def test_event_index_writes_each_event_once_by_its_dedup_id() -> None:
    events = [
        Event(time=T0, alert="a", description="d1", severity=5, record={"x": 1}, key="k1"),
        Event(time=T0, alert="a", description="d2", severity=5, record={"x": 2}, key="k2"),
    ]
    client = RecordedEventIndex([201, 409])
    assert OpenSearchEventStore(client, index="ev").add(events) == 1  # the second was there already
    lines = [json.loads(line) for line in client.bodies[0].splitlines()]
    assert lines[0] == {"create": {"_index": "ev", "_id": events[0].dedup}}
    assert lines[1] == events[0].to_json()
    with pytest.raises(StoreError, match="1 events refused: status 400"):
        OpenSearchEventStore(RecordedEventIndex([201, 400]), index="ev").add(events)
    hit = {"_source": events[1].to_json()}
    client = RecordedEventIndex(
        [], {"timed_out": False, "_shards": OK_SHARDS, "hits": {"total": {"value": 3}, "hits": [hit]}}
    )
    page = OpenSearchEventStore(client, index="ev").search(
        EventQuery(alert="a", severity=5, since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1), limit=1)
    )
    assert (page.total, [e.description for e in page.items]) == (3, ["d2"])
    assert client.bodies[0]["query"]["bool"]["filter"] == [
        {"term": {"alert": "a"}},
        {"term": {"severity": 5}},
        {"range": {"time": {"gte": "2026-01-01T11:00:00Z", "lt": "2026-01-01T13:00:00Z"}}},
    ]


def test_real_client_calls_reach_the_transport() -> None:
    """opensearch-py accepts exactly these calls: with nothing listening the error is the connection's."""
    client = OpenSearch(hosts=[f"http://127.0.0.1:{free_port()}"], timeout=2, max_retries=0)
    store = OpenSearchLogStore(client, timeout=2)
    with pytest.raises(StoreError, match="(?i)connection") as agg:
        run(SUM_BY_NS, WINDOW, store)
    assert "tigera_secure_ee_flows.cluster.*" in str(agg.value)
    per_hit = spec(description="hit", aggregateBy=(), metric=None, condition=None, threshold=None)
    with pytest.raises(StoreError, match="(?i)connection"):
        run(per_hit, WINDOW, store)
    events = OpenSearchEventStore(client, timeout=2)
    with pytest.raises(StoreError, match="(?i)connection"):
        events.add([Event(time=T0, alert="a", description="d", severity=1, record={})])
    with pytest.raises(StoreError, match="(?i)connection"):
        events.search(EventQuery(alert="a"))


def test_the_client_built_from_settings_carries_auth_and_tls_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = EngineSettings(
        log_store="opensearch",
        opensearch_url="https://opensearch.logging.svc:9200",
        opensearch_username="policywatch",
        opensearch_password=SecretStr("s3cret"),
        opensearch_ca_file=ca,
    )
    assert "s3cret" not in repr(settings)
    client = opensearch_client(settings)
    assert client.transport.kwargs["http_auth"] == ("policywatch", "s3cret")
    connection = client.transport.get_connection()
    assert connection.use_ssl
    assert connection.headers["authorization"] == "Basic " + base64.b64encode(b"policywatch:s3cret").decode()
    assert (connection.pool.cert_reqs, connection.pool.ca_certs) == ("CERT_REQUIRED", str(ca))

    unchecked = opensearch_client(EngineSettings(opensearch_url="https://os:9200", opensearch_verify_certs=False))
    connection = unchecked.transport.get_connection()
    assert "authorization" not in connection.headers
    assert connection.pool.cert_reqs == "CERT_NONE"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"opensearch_username": "u"},
            "needs both POLICYWATCH_OPENSEARCH_USERNAME and POLICYWATCH_OPENSEARCH_PASSWORD",
        ),
        ({"opensearch_ca_file": "/nonexistent/ca.pem"}, "POLICYWATCH_OPENSEARCH_CA_FILE /nonexistent/ca.pem"),
    ],
)
def test_incomplete_opensearch_credentials_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EngineSettings(opensearch_url="https://os:9200", **fields)
