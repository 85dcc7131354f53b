"""The engine's HTTP routes on the real app (SQLite, migrated): bulk ingest, events, dry run, and the
scheduler started by the app's lifespan."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.db import make_engine, migrate
from api.settings import Settings
from devstack.services import free_port
from evaluator.events import Event, SqlEventStore, events_table, rfc3339
from evaluator.logstore import insert_records
from tests.api.support import make_client
from tests.evaluator.engine.engine_data import audit, flow

NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/pw.db"
    migrate(url)
    return url


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """The app without background services (routes only)."""
    with make_client(db_url) as test_client:
        yield test_client


def ndjson(records: list[Any]) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def alert_object(name: str = "pg-internet", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "Internet to ${dest_namespace}/${dest_name} from ${source_ip}",
        "severity": 90,
        "dataSet": "flows",
        "period": "1m",
        "lookback": "3m",
        "query": "source_type=net AND dest_port=5432",
        "aggregateBy": ["dest_namespace", "dest_name", "source_ip"],
    }
    body.update(spec)
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalAlert", "metadata": {"name": name}, "spec": body}


def test_bulk_ingest_keeps_good_lines_and_reports_bad_ones(client: TestClient) -> None:
    body = ndjson(
        [
            {"index": {"_index": "tigera_secure_ee_flows"}},
            flow(NOW - MIN),
            "{not json",
            flow(NOW - MIN, dest_port="http"),
            "",
            flow(NOW - MIN, source_ip="198.51.100.3"),
        ]
    )
    response = client.post("/datasets/flows/_bulk", content=body, headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 200
    result = response.json()
    assert (result["lines"], result["ingested"], result["failed"]) == (6, 2, 2)
    assert result["errors"][0]["line"] == 3 and "not JSON" in result["errors"][0]["reason"]
    assert result["errors"][1]["line"] == 4 and result["errors"][1]["field"] == "dest_port"
    hostile = ndjson(["[" * 200_000 + "]" * 200_000, '{"a": ' * 50_000 + "1" + "}" * 50_000, "[1, 2]", "null"])
    answer = client.post("/datasets/dns/_bulk", content=hostile)
    assert answer.status_code == 400  # nothing of it stored: never a 2xx
    assert [e["line"] for e in answer.json()["errors"]] == [1, 2, 3, 4]
    unknown = client.post("/datasets/packets/_bulk", content="{}")
    assert unknown.status_code == 404
    assert "valid: audit, dns, flows" in unknown.json()["message"]
    assert client.post("/datasets/flows/_bulk", content=b"\xff\xfe").status_code == 400


def test_dry_run_at_and_over_a_range_writes_nothing(client: TestClient, db_url: str) -> None:
    client.post(
        "/datasets/flows/_bulk",
        content=ndjson([flow(NOW - 2 * MIN), flow(NOW - MIN, source_ip="198.51.100.3"), flow(NOW - 10 * MIN)]),
    )
    at = client.post("/globalalerts/test", params={"at": rfc3339(NOW)}, json=alert_object())
    assert at.status_code == 200, at.text
    assert at.json() == {
        "events": [
            {
                "type": "global_alert",
                "time": rfc3339(NOW),
                "alert": "pg-internet",
                "summary": f"Internet to prod/db-0 from {ip}",  # no spec.summary: the description
                "description": f"Internet to prod/db-0 from {ip}",
                "severity": 90,
                "record": {"dest_namespace": "prod", "dest_name": "db-0", "source_ip": ip},
            }
            for ip in ("198.51.100.3", "203.0.113.7")
        ]
    }
    # Every minute over 15 minutes: each pattern fires once (at its first run), not once per window.
    replay = client.post(
        "/globalalerts/test",
        params={"from": rfc3339(NOW - 15 * MIN), "to": rfc3339(NOW)},
        json=alert_object(),
    )
    assert [(e["time"], e["record"]["source_ip"]) for e in replay.json()["events"]] == [
        (rfc3339(NOW - 10 * MIN), "203.0.113.7"),
        (rfc3339(NOW - 2 * MIN), "203.0.113.7"),
        (rfc3339(NOW - MIN), "198.51.100.3"),
    ]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(events_table)) == 0
    engine.dispose()
    assert client.get("/globalalerts/pg-internet").status_code == 404


def test_dry_run_errors_are_clear(client: TestClient) -> None:
    bad = client.post("/globalalerts/test", json=alert_object(aggregateBy=["client_namespace"]))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "spec.aggregateBy[0]"
    assert "source_namespace" in bad.json()["errors"][0]["reason"]
    both = client.post("/globalalerts/test", params={"at": rfc3339(NOW), "from": rfc3339(NOW)}, json=alert_object())
    assert both.status_code == 400
    half = client.post("/globalalerts/test", params={"from": rfc3339(NOW)}, json=alert_object())
    assert half.status_code == 400 and "both from= and to=" in half.json()["message"]
    backwards = client.post(
        "/globalalerts/test", params={"from": rfc3339(NOW), "to": rfc3339(NOW - MIN)}, json=alert_object()
    )
    assert backwards.status_code == 400 and "before" in backwards.json()["message"]
    garbage = client.post("/globalalerts/test", params={"at": "yesterday"}, json=alert_object())
    assert garbage.status_code == 400


def test_events_filters_and_paging(client: TestClient, db_url: str) -> None:
    engine = sa.create_engine(db_url)
    store = SqlEventStore(engine)
    store.add(
        [
            Event(
                time=NOW - i * MIN,
                alert=f"a{i % 2}",
                description=f"e{i}",
                severity=10 * (1 + i % 3),
                record={"i": i},
                key=str(i),
            )
            for i in range(10)
        ]
    )
    engine.dispose()
    page = client.get("/events", params={"limit": 4}).json()
    assert page["kind"] == "EventList" and page["total"] == 10 and page["next"] == 4
    assert [e["description"] for e in page["items"]] == ["e0", "e1", "e2", "e3"]
    rest = client.get("/events", params={"limit": 4, "offset": 8}).json()
    assert [e["description"] for e in rest["items"]] == ["e8", "e9"] and "next" not in rest
    only_a1 = client.get("/events", params={"alert": "a1"}).json()
    assert [e["description"] for e in only_a1["items"]] == ["e1", "e3", "e5", "e7", "e9"]
    sev = client.get("/events", params={"severity": 30}).json()
    assert [e["description"] for e in sev["items"]] == ["e2", "e5", "e8"]
    ranged = client.get("/events", params={"since": rfc3339(NOW - 3 * MIN), "until": rfc3339(NOW - MIN)}).json()
    assert [e["description"] for e in ranged["items"]] == ["e2", "e3"]
    assert set(ranged["items"][0]) == {
        "type",
        "time",
        "alert",
        "summary",
        "description",
        "severity",
        "record",
        "id",
        "dismissed",
    }
    assert client.get("/events", params={"since": "soon"}).status_code == 400
    assert client.get("/events", params={"limit": 0}).status_code == 400
    inverted = client.get("/events", params={"since": rfc3339(NOW), "until": rfc3339(NOW - MIN)})
    assert inverted.status_code == 400


def test_the_app_runs_the_scheduler(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app's default services: an alert created over HTTP runs promptly and its event is listed."""
    monkeypatch.setenv("POLICYWATCH_RETENTION_INTERVAL", "1h")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        insert_records(conn, "audit", [audit(datetime.now(UTC) - MIN)])
    app = create_app(Settings(database_url=db_url), engine=engine)  # production default: the global registry
    with TestClient(app) as client:
        created = client.post(
            "/globalalerts",
            json={
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalAlert",
                "metadata": {"name": "gnp-deletes"},
                "spec": {
                    "description": "a GlobalNetworkPolicy was deleted",
                    "severity": 70,
                    "dataSet": "audit",
                    "query": "verb=delete",
                },
            },
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 20
        events: list[Any] = []
        while time.monotonic() < deadline and not events:
            events = client.get("/events", params={"alert": "gnp-deletes"}).json()["items"]
            time.sleep(0.2)
        assert [e["record"]["user"]["username"] for e in events] == ["alice"]
        status = client.get("/globalalerts/gnp-deletes").json()["status"]
        assert status["healthy"] is True and status["executionState"] == "executed"
        assert status["lastEvent"] == events[0]["time"]
        metrics = client.get("/metrics").text
        assert 'policywatch_evaluator_alert_runs_total{alert="gnp-deletes",outcome="ok"}' in metrics
        assert 'policywatch_evaluator_alert_healthy{alert="gnp-deletes"} 1.0' in metrics
        assert 'policywatch_evaluator_events_total{alert="gnp-deletes",severity="70"} 1.0' in metrics
        for name in (
            "alert_run_duration_seconds_bucket",
            "schedule_lateness_seconds_bucket",
            "alerts",
            "firing_instances",
        ):
            assert f"policywatch_evaluator_{name}" in metrics
    engine.dispose()


def test_event_index_down_is_503_not_500(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICYWATCH_EVENT_STORE", "opensearch")
    monkeypatch.setenv("POLICYWATCH_OPENSEARCH_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("POLICYWATCH_OPENSEARCH_TIMEOUT", "2")
    engine = make_engine(db_url)
    app = create_app(
        Settings(database_url=db_url), engine=engine, registry=CollectorRegistry(), service_factory=lambda s: []
    )
    with TestClient(app) as client:
        response = client.get("/events")
        assert response.status_code == 503
        assert "policywatch_events" in response.json()["message"]
    engine.dispose()


def test_dry_run_takes_yaml(client: TestClient) -> None:
    client.post("/datasets/flows/_bulk", content=ndjson([flow(NOW - MIN)]))
    body = (
        "apiVersion: projectcalico.org/v3\nkind: GlobalAlert\nmetadata: {name: y}\nspec:\n"
        "  description: 'from ${source_ip}'\n  severity: 5\n  dataSet: flows\n  aggregateBy: [source_ip]\n"
    )
    response = client.post(
        "/globalalerts/test", params={"at": rfc3339(NOW)}, content=body, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    assert [e["description"] for e in response.json()["events"]] == ["from 203.0.113.7"]
