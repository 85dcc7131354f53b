"""``/datasets/{d}/_bulk`` and the audit webhook: the formats producers send, nothing 2xx unless stored."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.db import make_engine, migrate
from api.settings import Settings
from tests.ingest.helpers import DNS_LINE, FLOW_LINE, audit_event, count, event_list, ndjson, recent_flow


def test_kube_apiserver_event_list_and_a_single_event(client: TestClient, engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    events = [
        audit_event(now - timedelta(seconds=i), user="alice", verb="delete", resource="secrets", name=f"s{i}")
        for i in range(3)
    ]
    response = client.post("/datasets/audit/webhook", json=event_list(events))
    assert response.status_code == 200, response.text
    assert (response.json()["ingested"], response.json()["failed"]) == (3, 0)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT requestreceivedtimestamp FROM logstore_audit ORDER BY 1 DESC")).all()
    assert stored[0][0] == datetime.fromisoformat(events[0]["requestReceivedTimestamp"]).timestamp()  # microseconds
    # The apiserver retries a batch it thinks failed: stored once.
    again = client.post("/datasets/audit/webhook", json=event_list(events)).json()
    assert (again["ingested"], again["duplicates"]) == (0, 3)
    # One Event, pretty-printed over many lines, on the data set's own bulk path.
    single = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", **audit_event(now, user="bob", verb="get",
              resource="pods", name="web-0")}  # fmt: skip
    pretty = client.post("/datasets/audit/_bulk", content=json.dumps(single, indent=2))
    assert pretty.status_code == 200 and pretty.json()["ingested"] == 1
    listed = client.post("/datasets/audit/_bulk", json=event_list([audit_event(now, user="c", verb="get",
                         resource="pods", name="x")]))  # fmt: skip
    assert listed.json()["ingested"] == 1
    assert count(engine, "audit") == 5
    # An EventList item without its time is reported by position; the others are stored.
    broken = event_list([audit_event(now, user="d", verb="get", resource="pods", name="y"), {"verb": "get"}])
    partial = client.post("/datasets/audit/webhook", json=broken).json()
    assert partial["ingested"] == 1 and partial["errors"] == [
        {"line": 1, "item": 2, "field": "requestReceivedTimestamp", "reason": partial["errors"][0]["reason"]}
    ]
    wrong = client.post("/datasets/flows/_bulk", json=event_list(events))
    assert wrong.status_code == 400 and "EventList" in wrong.json()["errors"][0]["reason"]


def test_arrays_dates_and_nothing_stored_is_never_2xx(client: TestClient, engine: sa.Engine) -> None:
    end = int(datetime.now(UTC).timestamp()) - 60
    array = [
        recent_flow(source_port=1),
        {**recent_flow(source_port=2), "start_time": str(end - 300), "end_time": str(end)},  # epoch seconds strings
        {**recent_flow(source_port=3), "start_time": (end - 300) * 1000, "end_time": end * 1000},  # epoch millis
        {**recent_flow(source_port=4), "end_time": f"{end}.5"},
    ]
    response = client.post("/datasets/flows/_bulk", json=array)  # Fluent Bit's and Vector's http outputs
    assert response.status_code == 200 and response.json()["ingested"] == 4
    with engine.connect() as conn:
        ends = conn.execute(sa.text("SELECT end_time FROM logstore_flows ORDER BY source_port")).scalars().all()
    assert ends == [end, end, end, end + 0.5]
    # Verbatim Calico lines as NDJSON, an Elasticsearch action line before one of them.
    lines = ndjson([{"index": {"_index": "tigera_secure_ee_dns.cluster.x"}}, DNS_LINE])
    assert client.post("/datasets/dns/_bulk", content=lines).json()["ingested"] == 1
    assert client.post("/datasets/flows/_bulk", content=FLOW_LINE).status_code == 200
    # A line of which nothing could be stored: 400 with the per-line report, never 200.
    refused = client.post("/datasets/flows/_bulk", content=json.dumps({**recent_flow(), "end_time": "yesterday"}))
    assert refused.status_code == 400
    assert refused.json()["failed"] == 1 and refused.json()["errors"][0]["field"] == "end_time"
    assert client.post("/datasets/flows/_bulk", content=b"").status_code == 400
    assert client.post("/datasets/flows/_bulk", content=b"[]").status_code == 400
    assert client.post("/datasets/flows/_bulk", json=[1, "x"]).status_code == 400
    assert count(engine, "flows") == 5


def test_partial_failure_then_retry_stores_each_good_line_once(client: TestClient, engine: sa.Engine) -> None:
    good = [recent_flow(source_port=p) for p in range(100, 110)]
    body = ndjson([*good[:5], {**recent_flow(), "dest_port": "http"}, *good[5:], "{oops"])
    first = client.post("/datasets/flows/_bulk", content=body).json()
    assert (first["ingested"], first["failed"], [e["line"] for e in first["errors"]]) == (10, 2, [6, 12])
    second = client.post("/datasets/flows/_bulk", content=body).json()
    assert (second["ingested"], second["duplicates"], second["failed"]) == (0, 10, 2)
    with_ids = ndjson([{"index": {"_id": "x-1"}}, good[0], {"create": {"_id": "x-1"}}, good[1]])
    answer = client.post("/datasets/flows/_bulk", content=with_ids).json()
    assert answer["ingested"] == 1 and "already exists" in answer["errors"][0]["reason"]
    assert count(engine, "flows") == 11


def test_a_globalalert_over_webhook_audit_events_fires_with_exact_counts(tmp_path: Path) -> None:
    """The scheduler of a real app run over audit events that came in through the webhook."""
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    migrate(url)
    engine = make_engine(url)
    settings = Settings(database_url=url, retention_interval="1h")
    app = create_app(settings, engine=engine, registry=CollectorRegistry())
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = []
    for user, deletes in (("alice", 5), ("bob", 2), ("carol", 1)):
        items += [
            audit_event(now - timedelta(seconds=5 + i), user=user, verb="delete", resource="secrets", name=f"{user}{i}")
            for i in range(deletes)
        ]
    items += [audit_event(now - timedelta(seconds=3), user="alice", verb="get", resource="secrets", name="a")]
    items += [audit_event(now - timedelta(seconds=4), user="bob", verb="delete", resource="pods", name="p")]
    with TestClient(app) as client:
        # Two webhook batches, the second one resent by the apiserver after a timeout.
        for batch in (items[:4], items[4:], items[4:]):
            assert client.post("/datasets/audit/webhook", json=event_list(batch)).status_code == 200
        created = client.post(
            "/globalalerts",
            json={
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalAlert",
                "metadata": {"name": "secret-deletes"},
                "spec": {
                    "description": "${user.username} deleted ${count} secrets",
                    "severity": 80,
                    "dataSet": "audit",
                    "period": "1m",
                    "lookback": "5m",
                    "query": "verb=delete AND objectRef.resource=secrets",
                    "aggregateBy": ["user.username"],
                    "metric": "count",
                    "condition": "gte",
                    "threshold": 2,
                },
            },
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 20
        events: list[Any] = []
        while time.monotonic() < deadline and not events:
            events = client.get("/events", params={"alert": "secret-deletes"}).json()["items"]
            time.sleep(0.2)
    engine.dispose()
    assert sorted((e["record"]["user.username"], e["record"]["count"]) for e in events) == [
        ("alice", 5.0),
        ("bob", 2.0),
    ]
    assert {e["description"] for e in events} == {"alice deleted 5 secrets", "bob deleted 2 secrets"}
