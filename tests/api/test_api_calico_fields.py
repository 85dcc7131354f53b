"""Calico's current GlobalAlert fields through the API: the documented sample, summary in events, type and
substitutions (run by the real engine on the SQL log store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.db import make_engine, migrate
from api.settings import Settings
from evaluator.events import Event, EventQuery, SqlEventStore, rfc3339
from tests.api.support import make_client
from tests.evaluator.engine.engine_data import flow

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "calico" / "globalalert-sample.yaml"
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


def alert(name: str = "pg", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": "${dest_namespace} reached from ${source_namespace}",
        "description": "flows to ${dest_namespace} from ${source_namespace}",
        "severity": 90,
        "dataSet": "flows",
        "period": "1m",
        "lookback": "3m",
        "query": "dest_port = 5432 AND source_namespace IN ${outsiders}",
        "substitutions": [{"name": "outsiders", "values": ["-", "dev*"]}],
        "aggregateBy": ["dest_namespace", "source_namespace"],
    }
    body.update(spec)
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalAlert", "metadata": {"name": name}, "spec": body}


def test_calicos_documented_sample_is_stored_as_sent(client: TestClient) -> None:
    created = client.post("/globalalerts", content=SAMPLE.read_text(), headers={"content-type": "application/yaml"})
    assert created.status_code == 201, created.text
    assert "warning" not in created.headers
    spec = client.get("/globalalerts/sample").json()["spec"]
    assert spec["summary"] == "Sample" and spec["description"] == "Sample ${source_namespace}/${source_name_aggr}"
    sent = yaml.safe_load(SAMPLE.read_text())["spec"]
    assert {k: spec[k] for k in sent} == sent


def test_type_is_kept_and_other_types_refused(client: TestClient) -> None:
    assert client.post("/globalalerts", json=alert(type="RuleBased")).status_code == 201
    assert client.get("/globalalerts/pg").json()["spec"]["type"] == "RuleBased"
    refused = client.post("/globalalerts", json=alert("other", type="AnomalyDetection"))
    assert refused.status_code == 422
    text = refused.text
    assert "spec.type" in text and "unknown alert type 'AnomalyDetection'; valid: RuleBased" in text
    assert client.get("/globalalerts/other").status_code == 404


def test_unknown_substitution_is_refused_with_its_name(client: TestClient) -> None:
    refused = client.post("/globalalerts", json=alert(substitutions=[{"name": "insiders", "values": ["prod"]}]))
    assert refused.status_code == 422
    assert "${outsiders} is not a substitution of this alert (defined: insiders)" in refused.text
    empty = client.post("/globalalerts", json=alert(substitutions=[{"name": "outsiders", "values": []}]))
    assert empty.status_code == 422 and "spec.substitutions[0].values" in empty.text


def test_substitutions_select_and_summary_reaches_the_events(client: TestClient) -> None:
    records = [
        flow(NOW - MIN, source_namespace="dev-a", source_type="wep"),
        flow(NOW - MIN, source_namespace="prod", source_type="wep"),  # not in ${outsiders}
        flow(NOW - 2 * MIN),  # source_namespace "-"
    ]
    body = "\n".join(json.dumps(r) for r in records) + "\n"
    assert client.post("/datasets/flows/_bulk", content=body).json()["ingested"] == 3
    answer = client.post("/globalalerts/test", params={"at": rfc3339(NOW)}, json=alert())
    assert answer.status_code == 200, answer.text
    events = sorted(answer.json()["events"], key=lambda e: e["summary"])
    assert [(e["summary"], e["description"]) for e in events] == [
        ("prod reached from -", "flows to prod from -"),
        ("prod reached from dev-a", "flows to prod from dev-a"),
    ]


def test_the_events_table_keeps_the_summary(db_url: str) -> None:
    engine = make_engine(db_url)
    store = SqlEventStore(engine)
    with_summary = Event(time=NOW, alert="a", description="long text", severity=5, record={}, summary="short", key="1")
    without = Event(time=NOW - MIN, alert="a", description="only text", severity=5, record={}, key="2")
    assert store.add([with_summary, without]) == 2
    page = store.search(EventQuery(alert="a"))
    assert [(e.summary, e.to_json()["summary"]) for e in page.items] == [("short", "short"), ("only text", "only text")]
    engine.dispose()


def test_the_lookback_warning_follows_the_configured_flush_interval(db_url: str) -> None:
    plain = {"description": "d", "severity": 5, "dataSet": "flows"}  # default period 5m, lookback 10m
    engine = make_engine(db_url)
    for flush, warned in (("5m", False), ("6m", True)):
        settings = Settings(database_url=db_url, flow_logs_flush_interval=flush)
        app = create_app(settings, engine=engine, registry=CollectorRegistry(), service_factory=lambda s: [])
        with TestClient(app) as client:
            response = client.post("/globalalerts", json={**alert(f"f{flush}"), "spec": plain})
            assert response.status_code == 201, response.text
            assert ("warning" in response.headers) is warned
            if warned:
                assert "flowLogsFlushInterval (6m0s)" in response.headers["warning"]
                assert "at least 11m0s" in response.headers["warning"]
    engine.dispose()
