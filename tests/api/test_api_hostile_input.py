"""Input that used to make the evaluator answer 500 (issue 17.4), on SQLite and on a real PostgreSQL:
each is a 4xx naming what was wrong, and a 500 tells the client the connection closes."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.db import make_engine, migrate
from api.models import GlobalAlertRow
from api.settings import Settings
from tests.api.support import no_services

HUGE = int("9" * 400)  # beyond float range: float(HUGE) overflows
YAML = {"content-type": "application/yaml"}


def alert(name: str = "hostile", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "severity": 80,
        "dataSet": "flows",
        "period": "5m",
        "lookback": "15m",
        "description": "denied: ${sum}",
        "query": "action=deny",
        "aggregateBy": ["source_namespace"],
        "field": "num_flows",
        "metric": "sum",
        "condition": "gt",
        "threshold": 0,
    }
    body.update(spec)
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalAlert", "metadata": {"name": name}, "spec": body}


def template(name: str = "hostile-t", **spec: Any) -> dict[str, Any]:
    body = alert(name, **spec)
    body["kind"] = "GlobalAlertTemplate"
    del body["spec"]["period"], body["spec"]["lookback"]
    return body


def _bad(response: Any, *words: str) -> str:
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["kind"] == "Status"
    message = str(response.json()["message"])
    for word in words:
        assert word in message, message
    return message


def test_integers_beyond_float_range_are_400(client: TestClient) -> None:
    assert client.post("/globalalerts", json=alert()).status_code == 201
    for path, body in (
        ("/globalalerts", alert("other", threshold=HUGE)),
        ("/globalalerttemplates", template(threshold=HUGE)),
        ("/globalalerts/test", alert("dry", threshold=HUGE)),
    ):
        _bad(client.post(path, content=json.dumps(body)), "400 digits", "too large")
        _bad(client.post(path, content=yaml.safe_dump(body), headers=YAML), "400 digits", "line")
    put = client.put("/globalalerts/hostile", content=json.dumps(alert(threshold=-HUGE)))
    _bad(put, "too large")
    assert client.get("/globalalerts/hostile").json()["spec"]["threshold"] == 0


def test_integers_over_4300_digits_are_400_also_in_ndjson(client: TestClient) -> None:
    digits = "1" * 5000
    text = json.dumps(alert()).replace('"threshold": 0', f'"threshold": {digits}')
    assert text.count(digits) == 1
    _bad(client.post("/globalalerts", content=text), "5000 digits")
    _bad(
        client.post(
            "/globalalerts",
            content=yaml.safe_dump(alert()).replace("threshold: 0", f"threshold: {digits}"),
            headers=YAML,
        ),
        "5000 digits",
    )
    good = json.dumps({"end_time": 1_700_000_000, "action": "deny", "num_flows": 1})
    bulk = client.post("/datasets/flows/_bulk", content=f'{{"num_flows": {digits}}}\n{good}\n')
    assert bulk.status_code == 200, bulk.text
    assert [e["line"] for e in bulk.json()["errors"]] == [1]


def test_raw_control_characters_in_yaml_are_400(client: TestClient) -> None:
    for char in ["\x00", "\x01", "\x08", "\x1b", "\x7f", "\ufffe"]:
        text = yaml.safe_dump(alert()).replace("denied: ", f"denied:{char} ")
        assert char in text
        message = _bad(client.post("/globalalerts", content=text.encode(), headers=YAML), "invalid YAML")
        assert f"U+{ord(char):04X}" in message
    assert client.get("/globalalerts/hostile").status_code == 404


def test_non_ascii_digits_in_resource_version_are_refused(client: TestClient) -> None:
    assert client.post("/globalalerts", json=alert()).status_code == 201
    for version in ["²", "١", "1²"]:
        body = alert(severity=10)
        body["metadata"]["resourceVersion"] = version
        response = client.put("/globalalerts/hostile", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["path"] == "metadata.resourceVersion"
    assert client.get("/globalalerts/hostile").json()["spec"]["severity"] == 80


EXTREME_DATES = [
    ("/globalalerts/test", {"at": "0001-01-01T00:00:00+14:00"}),
    ("/globalalerts/test", {"at": "9999-12-31T23:59:59-14:00"}),
    ("/globalalerts/test", {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}),
    ("/events", {"since": "0001-01-01T00:00:00+14:00"}),
    ("/events", {"until": "9999-12-31T23:59:59-14:00"}),
]


def test_extreme_dates_are_400_naming_the_parameter(client: TestClient) -> None:
    for path, params in EXTREME_DATES:
        if path == "/events":
            response = client.get(path, params=params)
        else:
            response = client.post(path, params=params, json=alert())
        message = _bad(response, "out of range")
        assert response.status_code == 400
        assert next(iter(params)) in message


def test_nul_in_query_or_path_is_400(client: TestClient) -> None:
    for path in ["/events?alert=%00", "/ui?alert=a%00b", "/globalalerts?continue=%00", "/globalalerts/a%00"]:
        response = client.get(path)
        assert response.status_code == 400, response.text
        assert "NUL" in response.json()["message"]


def test_concurrent_delete_and_create_of_one_name_never_500(client: TestClient) -> None:
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def churn(create: bool) -> None:
        for _ in range(25):
            if create:
                code = client.post("/globalalerts", json=alert("churn")).status_code
            else:
                code = client.delete("/globalalerts/churn").status_code
            with lock:
                codes[code] += 1

    threads = [threading.Thread(target=churn, args=(i % 2 == 0,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(codes) <= {200, 201, 404, 409}, codes
    assert codes[201] >= 1


def test_every_500_says_connection_close(db_url: str) -> None:
    app = create_app(Settings(database_url=db_url), registry=CollectorRegistry(), service_factory=no_services)

    @app.get("/test-only/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/test-only/boom")
        assert response.status_code == 500
        assert response.headers["connection"] == "close"
        assert response.json()["reason"] == "InternalError"
        assert "connection" not in test_client.get("/healthz").headers


@pytest.mark.postgres
def test_a_create_racing_a_delete_of_the_same_name_is_409(pg_database: str) -> None:
    """Deterministic form of the race: another client creates the name just before this INSERT and deletes
    it just after it failed, so the store finds no object to report as existing (IntegrityError).

    PostgreSQL only: the store's own writers queue on the resourceVersion counter (test_api_versions), so the
    other client here writes around it; on SQLite that counter's write holds the database's write lock, so no
    writer at all can come between the check and the INSERT."""
    db_url = pg_database
    migrate(db_url)
    engine = make_engine(db_url)
    other = make_engine(db_url)
    app = create_app(
        Settings(database_url=db_url), engine=engine, registry=CollectorRegistry(), service_factory=no_services
    )
    row = {"name": "raced", "uid": "u-other", "resource_version": 1, "generation": 1, "labels": {}, "annotations": {}}
    table: Any = GlobalAlertRow.__table__
    raced: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def race(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().upper()
        if verb.startswith("INSERT INTO GLOBAL_ALERTS") and not raced:
            raced.append("created")  # just before this INSERT: it will fail on the primary key
            now = datetime.now(UTC)
            with other.begin() as c:
                c.execute(table.insert().values(**row, created=now, updated=now, spec={}))
        elif verb.startswith("SELECT") and raced == ["created"]:
            raced.append("deleted")  # after it failed, before the store looks for the object it hit
            with other.begin() as c:
                c.execute(table.delete().where(table.c.name == "raced"))

    try:
        with TestClient(app) as test_client:
            response = test_client.post("/globalalerts", json=alert("raced"))
            assert raced == ["created", "deleted"]
            assert response.status_code == 409, response.text
            assert response.json()["reason"] == "Conflict"
            assert test_client.post("/globalalerts", json=alert("raced")).status_code == 201  # a retry succeeds
    finally:
        engine.dispose()
        other.dispose()
