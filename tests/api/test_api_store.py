"""Store semantics on SQLite and PostgreSQL: concurrent PUTs (one wins, one 409), status and spec
isolation through the scheduler's AlertRepository, status trimming, delete removing status."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.resources import GLOBAL_ALERT, parse_object
from api.store import Conflict, ObjectStore, SqlAlertRepository
from evaluator.alerts import MAX_ERROR_CONDITIONS, AlertStatus, ErrorCondition
from tests.api.support import alert

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_two_concurrent_puts_one_wins(engine_for: Engine) -> None:
    store = ObjectStore(engine_for, GLOBAL_ALERT)
    store.create(obj=parse_object(alert(), kind=GLOBAL_ALERT))
    barrier = threading.Barrier(2)
    outcomes: dict[int, Any] = {}

    def put(severity: int) -> None:
        body = alert(severity=severity)
        body["metadata"]["resourceVersion"] = "1"
        obj = parse_object(body, kind=GLOBAL_ALERT)
        barrier.wait()
        try:
            outcomes[severity] = store.replace(obj=obj)
        except Conflict as exc:
            outcomes[severity] = exc

    threads = [threading.Thread(target=put, args=(s,)) for s in (11, 22)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    conflicts = [s for s, o in outcomes.items() if isinstance(o, Conflict)]
    winners = [s for s, o in outcomes.items() if not isinstance(o, Conflict)]
    assert len(conflicts) == 1 and len(winners) == 1, outcomes
    current = store.get("ssh-deny")
    assert current is not None
    assert current.spec["severity"] == winners[0] and current.resource_version == 2


def test_concurrent_puts_over_http(client: TestClient) -> None:
    client.post("/globalalerts", json=alert())
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def put(severity: int) -> None:
        body = alert(severity=severity)
        body["metadata"]["resourceVersion"] = "1"
        barrier.wait()
        codes.append(client.put("/globalalerts/ssh-deny", json=body).status_code)

    threads = [threading.Thread(target=put, args=(s,)) for s in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(codes) == [200, 409, 409, 409]


def test_status_written_by_repository_and_shown_by_api(client: TestClient, engine_for: Engine) -> None:
    client.post("/globalalerts", json=alert())
    repo = SqlAlertRepository(engine_for)
    status = AlertStatus(
        lastUpdate=T0,
        active=True,
        healthy=False,
        executionState="Failed",
        lastExecuted=T0,
        lastEvent=None,
        errorConditions=tuple(ErrorCondition("QueryError", f"error {i}") for i in range(15)),
    )
    repo.write_status("ssh-deny", status)
    shown = client.get("/globalalerts/ssh-deny").json()["status"]
    assert shown["active"] is True and shown["healthy"] is False and shown["executionState"] == "Failed"
    assert shown["lastExecuted"] == "2026-01-02T03:04:05Z" and "lastEvent" not in shown
    assert [c["message"] for c in shown["errorConditions"]] == [f"error {i}" for i in range(5, 15)]
    assert len(shown["errorConditions"]) == MAX_ERROR_CONDITIONS
    stored = repo.get_status("ssh-deny")
    assert stored is not None and stored.lastUpdate == T0 and len(stored.errorConditions) == MAX_ERROR_CONDITIONS
    listed = client.get("/globalalerts").json()["items"][0]["status"]
    assert listed == shown


def test_spec_writes_keep_status_and_status_writes_keep_spec(client: TestClient, engine_for: Engine) -> None:
    client.post("/globalalerts", json=alert())
    repo = SqlAlertRepository(engine_for)
    repo.write_status("ssh-deny", AlertStatus(active=True, healthy=True, executionState="Succeeded", lastExecuted=T0))
    before = client.get("/globalalerts/ssh-deny").json()

    # A spec write carrying a forged status changes nothing in the status.
    body = alert(severity=99)
    body["status"] = {"healthy": False, "executionState": "forged"}
    after_put = client.put("/globalalerts/ssh-deny", json=body).json()
    assert after_put["spec"]["severity"] == 99
    assert after_put["status"] == before["status"]

    # A status write changes nothing in the spec or its versions.
    repo.write_status("ssh-deny", AlertStatus(active=False, healthy=False, executionState="Failed"))
    after_status = client.get("/globalalerts/ssh-deny").json()
    assert after_status["spec"] == after_put["spec"]
    assert after_status["metadata"] == after_put["metadata"]
    assert after_status["status"]["executionState"] == "Failed"

    stored = repo.get_alert("ssh-deny")
    assert stored is not None and stored.spec.severity == 99 and stored.generation == 2
    assert stored.resourceVersion == after_put["metadata"]["resourceVersion"]


def test_repository_lists_specs_and_ignores_deleted(client: TestClient, engine_for: Engine) -> None:
    for name in ("b-alert", "a-alert"):
        client.post("/globalalerts", json=alert(name))
    repo = SqlAlertRepository(engine_for)
    assert [a.name for a in repo.list_alerts()] == ["a-alert", "b-alert"]
    assert repo.get_alert("a-alert") is not None and repo.get_alert("zzz") is None
    repo.write_status("b-alert", AlertStatus(active=True))
    client.delete("/globalalerts/b-alert")
    assert repo.get_status("b-alert") is None
    repo.write_status("b-alert", AlertStatus(active=True))  # deleted meanwhile: nothing happens
    assert repo.get_status("b-alert") is None
    client.post("/globalalerts", json=alert("b-alert"))
    assert client.get("/globalalerts/b-alert").json()["status"]["active"] is False
