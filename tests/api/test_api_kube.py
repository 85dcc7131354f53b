"""The Kubernetes conventions of the API (issue 10 way 1, issue 17 item 8's Status bodies), over HTTP:
discovery, OpenAPI v3, Table, PATCH, selectors, watch, DeleteOptions, dryRun and ``metav1.Status``
details; what touches the store on SQLite and PostgreSQL, the rest on SQLite. kubectl itself drives them
in tests/kube/test_kubectl_api.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import store as store_module
from api.kube import watch as watch_module
from api.kube.patch import json_patch, merge_patch
from api.kube.table import human_duration
from api.store import VERSIONS_TABLE, SqlAlertRepository
from evaluator.alerts import AlertStatus
from tests.api.test_api_crud import alert, template

API = "/apis/projectcalico.org/v3"
TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def test_discovery(sqlite_client: TestClient) -> None:
    client = sqlite_client
    assert client.get("/api").json() == {"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []}
    groups = client.get("/apis").json()
    assert groups["kind"] == "APIGroupList"
    assert groups["groups"] == [
        {
            "name": "projectcalico.org",
            "versions": [{"groupVersion": "projectcalico.org/v3", "version": "v3"}],
            "preferredVersion": {"groupVersion": "projectcalico.org/v3", "version": "v3"},
        }
    ]
    assert client.get("/apis/projectcalico.org").json()["kind"] == "APIGroup"
    resources = client.get(API).json()
    assert resources["kind"] == "APIResourceList" and resources["groupVersion"] == "projectcalico.org/v3"
    by_name = {r["name"]: r for r in resources["resources"]}
    alerts = by_name["globalalerts"]
    assert alerts["kind"] == "GlobalAlert" and alerts["singularName"] == "globalalert" and not alerts["namespaced"]
    assert set(alerts["verbs"]) == {"create", "delete", "get", "list", "patch", "update", "watch"}
    assert "shortNames" not in alerts  # the spec names none
    assert by_name["globalalerttemplates"]["kind"] == "GlobalAlertTemplate"
    version = client.get("/version").json()
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.33.0+policywatch")


def test_openapi_v3(sqlite_client: TestClient) -> None:
    client = sqlite_client
    index = client.get("/openapi/v3").json()
    url = index["paths"]["apis/projectcalico.org/v3"]["serverRelativeURL"]
    document = client.get(url).json()
    assert client.get("/openapi/v3/apis/other/v1").status_code == 404
    schemas = document["components"]["schemas"]
    alert_schema = schemas["org.projectcalico.v3.GlobalAlert"]
    assert alert_schema["x-kubernetes-group-version-kind"] == [
        {"group": "projectcalico.org", "version": "v3", "kind": "GlobalAlert"}
    ]
    spec = alert_schema["properties"]["spec"]
    assert set(spec["required"]) == {"dataSet", "description", "severity"}
    assert spec["properties"]["severity"]["maximum"] == 100
    assert "status" not in schemas["org.projectcalico.v3.GlobalAlertTemplate"]["properties"]
    patch = document["paths"]["/apis/projectcalico.org/v3/globalalerts/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "GlobalAlert"
    assert {"name": "fieldValidation", "in": "query"}.items() <= next(
        p for p in patch["parameters"] if p["name"] == "fieldValidation"
    ).items()
    assert set(patch["requestBody"]["content"]) == {"application/merge-patch+json", "application/json-patch+json"}


def test_table(sqlite_client: TestClient) -> None:
    client = sqlite_client
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    client.post("/globalalerts", json=alert("b-alert"))
    client.post("/globalalerts", json=alert("a-alert", severity=5))
    executed = datetime.now(UTC) - timedelta(minutes=3)
    SqlAlertRepository(engine).write_status(
        "a-alert", AlertStatus(active=True, healthy=True, executionState="Succeeded", lastExecuted=executed)
    )
    listed = client.get(f"{API}/globalalerts", headers={"Accept": TABLE}).json()
    assert listed["kind"] == "Table" and listed["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in listed["columnDefinitions"]] == [
        "Name", "Dataset", "Severity", "Period", "Healthy", "Last Executed", "Age",
    ]  # fmt: skip
    first, second = listed["rows"]
    assert first["cells"][:6] == ["a-alert", "flows", 5, "5m0s", True, "3m"]
    assert second["cells"][4:6] == [False, None] and second["cells"][6].endswith("s")
    assert first["object"]["kind"] == "PartialObjectMetadata" and first["object"]["metadata"]["name"] == "a-alert"
    assert listed["metadata"]["resourceVersion"] == client.get("/globalalerts").json()["metadata"]["resourceVersion"]

    one = client.get(f"{API}/globalalerts/b-alert?includeObject=Object", headers={"Accept": TABLE}).json()
    assert len(one["rows"]) == 1 and one["rows"][0]["object"]["spec"]["severity"] == 80
    none = client.get("/globalalerts/b-alert?includeObject=None", headers={"Accept": TABLE}).json()
    assert "object" not in none["rows"][0]
    assert client.get("/globalalerts?includeObject=All", headers={"Accept": TABLE}).status_code == 400
    # without the Accept parameters: the plain object
    assert client.get("/globalalerts/b-alert").json()["kind"] == "GlobalAlert"

    client.post("/globalalerttemplates", json=template())
    templates = client.get("/globalalerttemplates", headers={"Accept": TABLE}).json()
    assert [c["name"] for c in templates["columnDefinitions"]] == ["Name", "Dataset", "Severity", "Period", "Age"]


@pytest.mark.parametrize(
    ("age", "shown"),
    [(0, "0s"), (-1, "0s"), (-5, "<invalid>"), (119, "119s"), (120, "2m"), (150, "2m30s"), (600, "10m"),
     (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (9 * 3600, "9h"), (50 * 3600, "2d2h"), (9 * 86400, "9d"),
     (3 * 365 * 86400, "3y"), (3 * 365 * 86400 + 86400, "3y1d"), (9 * 365 * 86400, "9y")],
)  # fmt: skip
def test_human_duration_as_kubernetes(age: int, shown: str) -> None:
    assert human_duration(timedelta(seconds=age)) == shown


def test_merge_and_json_patch(client: TestClient) -> None:
    created = client.post("/globalalerts", json=alert(summary="S")).json()
    patched = client.patch(
        "/globalalerts/ssh-deny",
        content=json.dumps({"metadata": {"labels": {"team": "net"}}, "spec": {"severity": 7, "summary": None}}),
        headers=MERGE,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["spec"]["severity"] == 7 and "summary" not in body["spec"]
    assert body["metadata"]["labels"] == {"team": "net"} and body["metadata"]["uid"] == created["metadata"]["uid"]
    assert body["metadata"]["generation"] == 2

    ops = [{"op": "replace", "path": "/spec/severity", "value": 9}, {"op": "add", "path": "/spec/aggregateBy/-",
           "value": "dest_namespace"}, {"op": "remove", "path": "/metadata/labels/team"}]  # fmt: skip
    patched = client.patch(f"{API}/globalalerts/ssh-deny", content=json.dumps(ops), headers=JSON_PATCH)
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["aggregateBy"][-1] == "dest_namespace" and "labels" not in patched.json()["metadata"]

    # a patch naming an old resourceVersion is a precondition
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"severity": 1}}
    conflict = client.patch("/globalalerts/ssh-deny", content=json.dumps(stale), headers=MERGE)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "Conflict"
    # a result the spec model refuses: 422 with the fields; nothing stored
    invalid = client.patch("/globalalerts/ssh-deny", content='{"spec":{"severity":0,"bogus":1}}', headers=MERGE)
    assert invalid.status_code == 422
    causes = {c["field"] for c in invalid.json()["details"]["causes"]}
    assert causes == {"spec.severity", "spec.bogus"}
    failed = client.patch(
        "/globalalerts/ssh-deny", content='[{"op":"test","path":"/spec/severity","value":1}]', headers=JSON_PATCH
    )
    assert failed.status_code == 422 and failed.json()["details"]["causes"][0]["field"] == "spec.severity"
    assert client.get("/globalalerts/ssh-deny").json()["spec"]["severity"] == 9

    for media, hint in (
        ("application/strategic-merge-patch+json", "--type=merge"),
        ("application/apply-patch+yaml", "server-side apply"),
        ("application/json", "merge-patch"),
    ):
        refused = client.patch("/globalalerts/ssh-deny", content="{}", headers={"Content-Type": media})
        assert refused.status_code == 415 and hint in refused.json()["message"], media
    missing = client.patch("/globalalerts/nope", content="{}", headers=MERGE)
    assert missing.status_code == 404 and missing.json()["details"]["name"] == "nope"
    bad_ops = client.patch("/globalalerts/ssh-deny", content='{"op":"add"}', headers=JSON_PATCH)
    assert bad_ops.status_code == 400


def test_patch_documents() -> None:
    # RFC 7386 appendix A (a few)
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    # RFC 6902 appendix A (a few)
    assert json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {"foo": "bar", "baz": "qux"}
    assert json_patch({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]
    }
    assert json_patch({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                      [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]) == {
        "foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}  # fmt: skip
    assert json_patch({"/": 1, "~": 2}, [{"op": "copy", "from": "/~1", "path": "/~0"}]) == {"/": 1, "~": 1}
    document = {"foo": ["bar"]}
    assert json_patch(document, [{"op": "remove", "path": "/foo/0"}]) == {"foo": []} and document == {"foo": ["bar"]}


def test_selectors(sqlite_client: TestClient) -> None:
    client = sqlite_client
    for name, labels in (("a", {"team": "net", "tier": "1"}), ("b", {"team": "sec"}), ("c", {})):
        body = alert(name)
        body["metadata"]["labels"] = labels
        client.post("/globalalerts", json=body)

    def names(**params: str) -> list[str]:
        response = client.get("/globalalerts", params=params)
        assert response.status_code == 200, response.text
        return [i["metadata"]["name"] for i in response.json()["items"]]

    assert names(labelSelector="team=net") == ["a"]
    assert names(labelSelector="team==net,tier") == ["a"]
    assert names(labelSelector="team!=net") == ["b", "c"]
    assert names(labelSelector="team in (net, sec)") == ["a", "b"]
    assert names(labelSelector="team notin (net)") == ["b", "c"]
    assert names(labelSelector="!team") == ["c"]
    assert names(fieldSelector="metadata.name=b") == ["b"]
    assert names(fieldSelector="metadata.name!=b", labelSelector="team") == ["a"]
    page = client.get("/globalalerts", params={"labelSelector": "team", "limit": 1}).json()
    assert [i["metadata"]["name"] for i in page["items"]] == ["a"]
    assert names(labelSelector="team", limit="1", **{"continue": page["metadata"]["continue"]}) == ["b"]
    for params in ({"labelSelector": "team=(x"}, {"fieldSelector": "spec.severity=5"}):
        bad = client.get("/globalalerts", params=params)
        assert bad.status_code == 400 and bad.json()["reason"] == "BadRequest", params


def _watch(client: TestClient, path: str = "/globalalerts", *, accept: str = "", **params: str) -> list[dict[str, Any]]:
    """The events of a one-second watch (``timeoutSeconds`` ends it)."""
    headers = {"Accept": accept} if accept else {}
    query = {"watch": "true", "timeoutSeconds": "1", **params}
    with client.stream("GET", path, params=query, headers=headers) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line]


def test_watch(client: TestClient) -> None:
    start = client.post("/globalalerts", json=alert("w-one")).json()["metadata"]["resourceVersion"]
    client.post("/globalalerttemplates", json=template())  # another kind: not in this stream
    client.put("/globalalerts/w-one", json=alert("w-one", severity=3))
    client.post("/globalalerts", json=alert("w-two"))
    client.delete("/globalalerts/w-one")

    events = _watch(client, resourceVersion=start)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "w-one"), ("ADDED", "w-two"), ("DELETED", "w-one"),
    ]  # fmt: skip
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert events[0]["object"]["spec"]["severity"] == 3 and events[0]["object"]["status"]["healthy"] is False

    # no resourceVersion: the current objects as ADDED first
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in _watch(client)] == [("ADDED", "w-two")]
    tables = _watch(
        client, f"{API}/globalalerts", accept=TABLE, resourceVersion=start, fieldSelector="metadata.name=w-two"
    )
    assert [(e["type"], e["object"]["kind"]) for e in tables] == [("ADDED", "Table")]
    assert tables[0]["object"]["rows"][0]["cells"][0] == "w-two"

    bad = client.get("/globalalerts", params={"watch": "true", "resourceVersion": "²"})
    assert bad.status_code == 400 and "resourceVersion" in bad.json()["message"]


def test_watch_from_a_pruned_version_expires(sqlite_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = sqlite_client
    monkeypatch.setattr(store_module, "WATCH_WINDOW", 3)
    monkeypatch.setattr(store_module, "_PRUNE_EVERY", 2)
    first = client.post("/globalalerts", json=alert()).json()["metadata"]["resourceVersion"]
    for severity in range(1, 8):
        client.put("/globalalerts/ssh-deny", json=alert(severity=severity))
    expired = _watch(client, resourceVersion=first)
    assert len(expired) == 1 and expired[0]["type"] == "ERROR"
    assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        compacted = conn.execute(VERSIONS_TABLE.select()).one().compacted
    kept = _watch(client, resourceVersion=str(compacted))
    assert [e["object"]["spec"]["severity"] for e in kept] == list(range(8 - len(kept), 8)) and kept
    assert _watch(client, resourceVersion=str(compacted - 1))[0]["type"] == "ERROR"


def test_status_details(sqlite_client: TestClient) -> None:
    client = sqlite_client
    missing = client.get(f"{API}/globalalerttemplates/nope").json()
    assert missing["reason"] == "NotFound" and missing["code"] == 404
    assert missing["details"] == {"name": "nope", "group": "projectcalico.org", "kind": "globalalerttemplates"}

    invalid = client.post("/globalalerts", json=alert("bad-one", severity=0)).json()
    assert invalid["reason"] == "Invalid"
    assert invalid["details"]["name"] == "bad-one" and invalid["details"]["kind"] == "GlobalAlert"
    assert invalid["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": invalid["errors"][0]["reason"], "field": "spec.severity"}
    ]
    exists = client.post("/globalalerts", json=alert())
    exists = client.post("/globalalerts", json=alert())
    assert exists.status_code == 409 and exists.json()["details"]["name"] == "ssh-deny"
    bad_query = client.get("/globalalerts", params={"limit": "x"}).json()
    assert bad_query["reason"] == "BadRequest" and bad_query["details"]["causes"][0]["field"] == "query.limit"


def test_dry_run_checks_everything_and_stores_nothing(client: TestClient) -> None:
    before = client.get("/globalalerts").json()["metadata"]["resourceVersion"]
    created = client.post("/globalalerts?dryRun=All", json=alert())
    assert created.status_code == 201 and created.json()["metadata"]["name"] == "ssh-deny"
    assert client.get("/globalalerts/ssh-deny").status_code == 404
    assert client.post("/globalalerts?dryRun=All", json=alert(severity=0)).status_code == 422
    client.post("/globalalerts", json=alert())
    stored = client.get("/globalalerts").json()["metadata"]["resourceVersion"]
    assert int(stored) == int(before) + 1  # the dry runs drew no version
    assert client.post("/globalalerts?dryRun=All", json=alert()).status_code == 409
    replaced = client.put("/globalalerts/ssh-deny?dryRun=All", json=alert(severity=1))
    assert replaced.status_code == 200 and replaced.json()["spec"]["severity"] == 1
    patched = client.patch("/globalalerts/ssh-deny?dryRun=All", content='{"spec":{"severity":2}}', headers=MERGE)
    assert patched.status_code == 200 and patched.json()["spec"]["severity"] == 2
    assert client.delete("/globalalerts/ssh-deny?dryRun=All").status_code == 200
    body = json.dumps({"dryRun": ["All"]})
    assert client.request("DELETE", "/globalalerts/ssh-deny", content=body).status_code == 200
    current = client.get("/globalalerts/ssh-deny").json()
    assert current["spec"]["severity"] == 80 and current["metadata"]["resourceVersion"] == stored
    for bad in ("/globalalerts?dryRun=Some", "/globalalerts?fieldValidation=Loose"):
        refused = client.post(bad, json=alert("other"))
        assert refused.status_code == 400 and bad.split("?")[1].split("=")[0] in refused.json()["message"]
    assert client.get("/globalalerts/other").status_code == 404


def test_delete_options_preconditions(client: TestClient) -> None:
    meta = client.post("/globalalerts", json=alert()).json()["metadata"]

    def delete(body: Any) -> Any:
        return client.request("DELETE", "/globalalerts/ssh-deny", content=json.dumps(body))

    assert delete({"preconditions": {"uid": "another"}}).status_code == 409
    assert delete({"preconditions": {"resourceVersion": "999"}}).status_code == 409
    assert delete({"preconditions": "x"}).status_code == 400
    assert delete([1]).status_code == 400
    done = delete({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
                   "preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}})  # fmt: skip
    assert done.status_code == 200 and done.json()["metadata"]["name"] == "ssh-deny"
    assert client.get("/globalalerts/ssh-deny").status_code == 404


def test_watch_bounds_and_bookmarks(sqlite_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    version = sqlite_client.post("/globalalerts", json=alert()).json()["metadata"]["resourceVersion"]
    monkeypatch.setattr(watch_module, "BOOKMARK_EVERY_S", 0.0)
    events = _watch(sqlite_client, resourceVersion=version, allowWatchBookmarks="true")
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[0]["object"]["metadata"]["resourceVersion"] == version
    assert sqlite_client.app.state.watch_slots.active == 0  # type: ignore[attr-defined]  # every ended watch freed
    monkeypatch.setattr(watch_module, "MAX_WATCHES", 0)
    busy = sqlite_client.get("/globalalerts", params={"watch": "true"})
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "5" and busy.json()["reason"] == "TooManyRequests"
