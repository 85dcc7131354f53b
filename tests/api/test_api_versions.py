"""resourceVersion as Kubernetes has it (issue 17, items 2 and 5), on SQLite and PostgreSQL: one global
sequence, so no version repeats across delete and re-create; a stale uid fails the precondition; of
concurrent DELETEs exactly one succeeds; unconditional PUTs never conflict."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.db import make_engine, migrate
from api.resources import GLOBAL_ALERT, GLOBAL_ALERT_TEMPLATE, parse_object
from api.store import AlreadyExists, Conflict, ObjectStore, UidConflict
from tests.api.test_api_crud import alert, template


def _together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released at once; their results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected and asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_versions_unique_across_delete_and_recreate(client: TestClient) -> None:
    first = client.post("/globalalerts", json=alert("aba")).json()["metadata"]
    assert client.delete("/globalalerts/aba").status_code == 200
    second = client.post("/globalalerts", json=alert("aba")).json()["metadata"]
    assert second["resourceVersion"] != first["resourceVersion"] and second["uid"] != first["uid"]
    # the other kind draws from the same sequence
    other = client.post("/globalalerttemplates", json=template()).json()["metadata"]
    versions = [int(m["resourceVersion"]) for m in (first, second, other)]
    assert versions == sorted(set(versions))

    # The lost update of the issue: a PUT holding the first incarnation's version and uid.
    stale = alert("aba", severity=1)
    stale["metadata"].update(resourceVersion=first["resourceVersion"], uid=first["uid"])
    refused = client.put("/globalalerts/aba", json=stale)
    assert refused.status_code == 409, refused.text
    assert refused.json()["reason"] == "Conflict" and first["uid"] in refused.json()["message"]
    assert refused.json()["details"] == {"name": "aba", "group": "projectcalico.org", "kind": "globalalerts"}
    # the uid alone is a precondition too, and the version alone
    only_uid = alert("aba", severity=2)
    only_uid["metadata"]["uid"] = first["uid"]
    assert client.put("/globalalerts/aba", json=only_uid).status_code == 409
    only_version = alert("aba", severity=3)
    only_version["metadata"]["resourceVersion"] = first["resourceVersion"]
    assert client.put("/globalalerts/aba", json=only_version).status_code == 409
    assert client.get("/globalalerts/aba").json()["spec"]["severity"] == 80

    # the current uid and version pass
    fresh = alert("aba", severity=4)
    fresh["metadata"].update(resourceVersion=second["resourceVersion"], uid=second["uid"])
    replaced = client.put("/globalalerts/aba", json=fresh)
    assert replaced.status_code == 200, replaced.text
    assert int(replaced.json()["metadata"]["resourceVersion"]) > versions[-1]
    listed = client.get("/globalalerts").json()["metadata"]["resourceVersion"]
    assert listed == replaced.json()["metadata"]["resourceVersion"]


def test_store_preconditions(engine_for: Engine) -> None:
    store = ObjectStore(engine_for, GLOBAL_ALERT_TEMPLATE)
    created = store.create(obj=parse_object(template(), kind=GLOBAL_ALERT_TEMPLATE))
    try:
        store.create(obj=parse_object(template(), kind=GLOBAL_ALERT_TEMPLATE))
        raise AssertionError("created twice")
    except AlreadyExists:
        pass
    for kwargs in ({"uid": "someone-else"}, {"resource_version": created.resource_version + 5}):
        try:
            store.delete(created.name, **kwargs)  # type: ignore[arg-type]
            raise AssertionError(f"deleted despite {kwargs}")
        except (UidConflict, Conflict):
            pass
    deleted = store.delete(created.name, uid=created.uid, resource_version=created.resource_version)
    assert deleted is not None and deleted.resource_version > created.resource_version
    assert store.delete(created.name) is None


def test_concurrent_deletes_exactly_one_wins(engine_for: Engine) -> None:
    store = ObjectStore(engine_for, GLOBAL_ALERT)
    store.create(obj=parse_object(alert(), kind=GLOBAL_ALERT))
    results = _together(50, lambda _i: store.delete("ssh-deny"))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len([r for r in results if r is not None]) == 1


def test_concurrent_deletes_over_http(client: TestClient) -> None:
    client.post("/globalalerts", json=alert())
    codes = _together(12, lambda _i: client.delete("/globalalerts/ssh-deny").status_code)
    assert sorted(codes) == [200] + [404] * 11


def test_unconditional_puts_never_conflict(engine_for: Engine) -> None:
    store = ObjectStore(engine_for, GLOBAL_ALERT)
    created = store.create(obj=parse_object(alert(), kind=GLOBAL_ALERT))
    results = _together(50, lambda i: store.replace(obj=parse_object(alert(severity=i + 1), kind=GLOBAL_ALERT)))
    assert not [r for r in results if isinstance(r, Exception)], results
    versions = sorted(r.resource_version for r in results)
    assert versions == list(range(created.resource_version + 1, created.resource_version + 51))
    current = store.get("ssh-deny")
    assert current is not None and current.resource_version == versions[-1]
    winner = next(r for r in results if r.resource_version == versions[-1])
    assert current.spec["severity"] == winner.spec["severity"]


def test_concurrent_delete_and_create_of_one_name(engine_for: Engine) -> None:
    store = ObjectStore(engine_for, GLOBAL_ALERT)
    for _ in range(5):
        store.create(obj=parse_object(alert(), kind=GLOBAL_ALERT))

        def work(i: int) -> Any:
            if i % 2:
                return store.delete("ssh-deny")
            return store.create(obj=parse_object(alert(), kind=GLOBAL_ALERT))

        results = _together(6, work)
        unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, AlreadyExists)]
        assert not unexpected, unexpected
        store.delete("ssh-deny")


def test_migration_renumbers_existing_objects(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0004_summary")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:  # two objects of the old per-object numbering, both at version 3
            for table in ("global_alerts", "global_alert_templates"):
                conn.execute(
                    text(
                        f"INSERT INTO {table} (name, uid, resource_version, generation, created, updated, labels,"
                        " annotations, spec) VALUES ('x', :uid, 3, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
                        " '{}', '{}', '{}')"
                    ),
                    {"uid": table},
                )
        migrate(url)
        with engine.connect() as conn:
            versions = [
                conn.execute(text(f"SELECT resource_version FROM {t}")).scalar_one()
                for t in ("global_alerts", "global_alert_templates")
            ]
        assert sorted(versions) == [4, 5]  # above every version issued before, and distinct
        created = ObjectStore(engine, GLOBAL_ALERT).create(obj=parse_object(alert(), kind=GLOBAL_ALERT))
        assert created.resource_version == 6
    finally:
        engine.dispose()


def test_unconditional_puts_over_http(client: TestClient) -> None:
    client.post("/globalalerts", json=alert())
    codes = _together(16, lambda i: client.put("/globalalerts/ssh-deny", json=alert(severity=i + 1)).status_code)
    assert codes == [200] * 16
