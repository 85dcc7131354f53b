"""CRUD of GlobalAlerts and GlobalAlertTemplates over HTTP, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.api.support import alert

API = "/apis/projectcalico.org/v3"


def template(name: str = "http.connections") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalAlertTemplate",
        "metadata": {"name": name},
        "spec": {
            "description": "HTTP from ${source_namespace} to <desired_namespace>/${dest_name_aggr}",
            "severity": 50,
            "dataSet": "flows",
            "query": 'dest_namespace="<desired namespace>" AND dest_port=80',
            "aggregateBy": ["source_namespace", "dest_name_aggr"],
            "field": "num_flows",
            "metric": "sum",
            "condition": "gte",
            "threshold": 1,
        },
    }


@pytest.mark.parametrize("prefix", ["", API])
def test_create_read_replace_delete(client: TestClient, prefix: str) -> None:
    created = client.post(f"{prefix}/globalalerts", json=alert())
    assert created.status_code == 201, created.text
    body = created.json()
    meta = body["metadata"]
    assert meta["name"] == "ssh-deny" and meta["resourceVersion"] == "1" and meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert body["spec"]["period"] == "5m0s" and body["spec"]["lookback"] == "15m0s"
    assert body["status"] == {"active": False, "healthy": False, "executionState": "", "errorConditions": []}

    read = client.get(f"{prefix}/globalalerts/ssh-deny")
    assert read.status_code == 200 and read.json() == body

    changed = alert(severity=90)
    changed["metadata"].update(resourceVersion="1", labels={"team": "net"}, annotations={"note": "x y"})
    replaced = client.put(f"{prefix}/globalalerts/ssh-deny", json=changed)
    assert replaced.status_code == 200, replaced.text
    after = replaced.json()
    assert after["spec"]["severity"] == 90
    assert after["metadata"]["resourceVersion"] == "2" and after["metadata"]["generation"] == 2
    assert after["metadata"]["labels"] == {"team": "net"} and after["metadata"]["annotations"] == {"note": "x y"}
    assert after["metadata"]["uid"] == meta["uid"]
    assert after["metadata"]["creationTimestamp"] == meta["creationTimestamp"]

    # Same spec again: new resourceVersion, same generation.
    again = client.put(f"{prefix}/globalalerts/ssh-deny", json=changed | {"metadata": {"name": "ssh-deny"}})
    assert again.json()["metadata"]["resourceVersion"] == "3"
    assert again.json()["metadata"]["generation"] == 2

    deleted = client.delete(f"{prefix}/globalalerts/ssh-deny")
    assert deleted.status_code == 200 and deleted.json()["metadata"]["name"] == "ssh-deny"
    assert client.get(f"{prefix}/globalalerts/ssh-deny").status_code == 404
    assert client.delete(f"{prefix}/globalalerts/ssh-deny").status_code == 404


def test_both_paths_share_objects(client: TestClient) -> None:
    assert client.post("/globalalerts", json=alert()).status_code == 201
    assert client.get(f"{API}/globalalerts/ssh-deny").status_code == 200
    assert client.post(f"{API}/globalalerts", json=alert()).status_code == 409


def test_create_existing_is_409(client: TestClient) -> None:
    assert client.post("/globalalerts", json=alert()).status_code == 201
    second = client.post("/globalalerts", json=alert(severity=1))
    assert second.status_code == 409
    assert second.json()["reason"] == "AlreadyExists" and "ssh-deny" in second.json()["message"]
    assert client.get("/globalalerts/ssh-deny").json()["spec"]["severity"] == 80


def test_missing_objects_are_404(client: TestClient) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, "/globalalerts/nope")
        assert response.status_code == 404 and response.json()["reason"] == "NotFound"
    put = client.put("/globalalerts/nope", json=alert("nope"))
    assert put.status_code == 404
    assert client.get("/globalalerttemplates/nope").status_code == 404


def test_stale_resource_version_is_409(client: TestClient) -> None:
    client.post("/globalalerts", json=alert())
    first = alert(severity=10)
    first["metadata"]["resourceVersion"] = "1"
    assert client.put("/globalalerts/ssh-deny", json=first).status_code == 200
    stale = alert(severity=20)
    stale["metadata"]["resourceVersion"] = "1"
    response = client.put("/globalalerts/ssh-deny", json=stale)
    assert response.status_code == 409 and response.json()["reason"] == "Conflict"
    assert "is now 2" in response.json()["message"]
    assert client.get("/globalalerts/ssh-deny").json()["spec"]["severity"] == 10


def test_put_name_must_match_path(client: TestClient) -> None:
    client.post("/globalalerts", json=alert())
    response = client.put("/globalalerts/ssh-deny", json=alert("other"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "metadata.name"


def test_put_takes_name_from_path_when_missing(client: TestClient) -> None:
    client.post("/globalalerts", json=alert())
    body = alert(severity=3)
    del body["metadata"]
    assert client.put("/globalalerts/ssh-deny", json=body).json()["spec"]["severity"] == 3


def test_invalid_object_lists_every_error(client: TestClient) -> None:
    body = alert("Bad_Name", severity=0, dataSet="flows", query="rtype = A", metric="median")
    body["kind"] = "GlobalAlertTemplate"
    body["extra"] = 1
    response = client.post("/globalalerts", json=body)
    assert response.status_code == 422
    data = response.json()
    assert data["reason"] == "Invalid" and data["kind"] == "Status"
    paths = {e["path"] for e in data["errors"]}
    assert {"extra", "kind", "metadata.name", "spec.severity", "spec.query", "spec.metric"} <= paths
    by_path = {e["path"]: e for e in data["errors"]}
    assert by_path["spec.severity"]["value"] == 0 and "1 to 100" in by_path["spec.severity"]["reason"]
    assert client.get("/globalalerts").json()["items"] == []


def test_metadata_checks(client: TestClient) -> None:
    body = alert()
    body["metadata"].update(labels={"ok": "yes", "bad key!": "v"}, annotations={"n": 5}, resourceVersion="abc", foo=1)
    errors = {e["path"] for e in client.post("/globalalerts", json=body).json()["errors"]}
    assert errors == {"metadata.labels.bad key!", "metadata.annotations.n", "metadata.resourceVersion", "metadata.foo"}


@pytest.mark.parametrize(
    ("labels", "annotations", "bad"),
    [
        ({"a" * 64: "v"}, {}, "metadata.labels." + "a" * 64),  # a name part is at most 63
        ({"Example.com/app": "v"}, {}, "metadata.labels.Example.com/app"),  # the prefix is a lower-case DNS name
        ({"x" * 254 + "/app": "v"}, {}, "metadata.labels." + "x" * 254 + "/app"),
        ({}, {"-note": "x"}, "metadata.annotations.-note"),  # annotation keys follow the same rule
        ({}, {"big": "x" * (256 * 1024)}, "metadata.annotations"),  # 256 KiB in all, keys included
    ],
)
def test_label_and_annotation_keys_and_sizes_as_kubernetes(
    client: TestClient, labels: dict[str, str], annotations: dict[str, str], bad: str
) -> None:
    body = alert()
    body["metadata"].update(labels=labels, annotations=annotations)
    response = client.post("/globalalerts", json=body)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == [bad]


def test_kubernetes_shaped_keys_are_accepted(client: TestClient) -> None:
    body = alert()
    body["metadata"].update(
        labels={"app.kubernetes.io/name": "web", "a" * 63: "v"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "y" * (200 * 1024)},
    )
    assert client.post("/globalalerts", json=body).status_code == 201


def test_server_metadata_echoed_back_is_ignored(client: TestClient) -> None:
    created = client.post("/globalalerts", json=alert()).json()
    created["spec"]["severity"] = 7
    replaced = client.put("/globalalerts/ssh-deny", json=created)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["metadata"]["uid"] == created["metadata"]["uid"]


def test_list_is_ordered_and_paged(client: TestClient) -> None:
    names = [f"alert-{i:02d}" for i in range(7)]
    for name in reversed(names):
        assert client.post("/globalalerts", json=alert(name)).status_code == 201
    full = client.get("/globalalerts").json()
    assert full["kind"] == "GlobalAlertList" and full["apiVersion"] == "projectcalico.org/v3"
    assert [i["metadata"]["name"] for i in full["items"]] == names
    assert "continue" not in full["metadata"]

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if token:
            params["continue"] = token
        page = client.get("/globalalerts", params=params).json()
        seen += [i["metadata"]["name"] for i in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
    assert seen == names and pages == 3


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "x"}, {"continue": "!!!"}, {"continue": "AAAA"}])
def test_bad_list_parameters_are_400(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/globalalerts", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["kind"] == "Status"


def test_yaml_in_and_out(client: TestClient) -> None:
    text = yaml.safe_dump(alert())
    created = client.post("/globalalerts", content=text, headers={"content-type": "application/yaml"})
    assert created.status_code == 201, created.text
    as_yaml = client.get("/globalalerts/ssh-deny", headers={"accept": "application/yaml"})
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text)["spec"]["query"] == "action=deny AND dest_port=22"
    listed = client.get("/globalalerts", headers={"accept": "application/json;q=0.5, application/yaml"})
    assert yaml.safe_load(listed.text)["kind"] == "GlobalAlertList"
    assert client.get("/globalalerts", headers={"accept": "application/yaml;q=0.1, application/json"}).json()
    error = client.get("/globalalerts/none", headers={"accept": "text/yaml"})
    assert error.status_code == 404 and yaml.safe_load(error.text)["reason"] == "NotFound"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "fragment"),
    [
        ("{", "application/json", 400, "invalid JSON at line 1"),
        ("a: [", "application/yaml", 400, "invalid YAML"),
        ("a: !!python/object:os.system x", "application/yaml", 400, "not allowed"),
        ("a: 1\n---\nb: 2\n", "application/yaml", 400, "one YAML document"),
        ("", "application/json", 400, "empty body"),
        ("<x/>", "application/xml", 415, "not supported"),
        ("[1, 2]", "application/json", 422, "expected a GlobalAlert object"),
        ('{"spec": {"description": "\\ud800"}}', "application/json", 400, "unpaired surrogate"),
        ('{"spec": {"description": "a\\u0000"}}', "application/json", 400, "NUL"),
        ('spec: {description: "\\ud800"}', "application/yaml", 400, "unpaired surrogate"),
        ("[" * 5000 + "]" * 5000, "application/json", 400, "nested"),
        (b"\xff\xfe", "application/json", 400, "UTF-8"),
    ],
)
def test_bad_bodies(client: TestClient, content: Any, content_type: str, status: int, fragment: str) -> None:
    response = client.post("/globalalerts", content=content, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]


def test_lookback_warning_header(client: TestClient) -> None:
    response = client.post("/globalalerts", json=alert(lookback="9m"))
    assert response.status_code == 201
    assert response.headers["warning"].startswith('299 - "spec.lookback: lookback 9m0s is shorter')
    assert "warning" not in client.post("/globalalerts", json=alert("b", lookback="10m")).headers


def test_templates_crud_and_placeholders(client: TestClient) -> None:
    created = client.post("/globalalerttemplates", json=template())
    assert created.status_code == 201, created.text
    assert "status" not in created.json()
    assert created.json()["kind"] == "GlobalAlertTemplate"
    listed = client.get(f"{API}/globalalerttemplates").json()
    assert listed["kind"] == "GlobalAlertTemplateList" and len(listed["items"]) == 1
    # The same object is not a valid GlobalAlert: placeholders must be filled in.
    as_alert = copy.deepcopy(template("from-template"))
    as_alert["kind"] = "GlobalAlert"
    errors = client.post("/globalalerts", json=as_alert).json()["errors"]
    assert {e["path"] for e in errors} == {"spec.query", "spec.description"}
    assert all("placeholder" in e["reason"] for e in errors)
    # Templates and alerts are separate namespaces of names.
    assert client.post("/globalalerts", json=alert("http.connections")).status_code == 201
    assert client.delete("/globalalerttemplates/http.connections").status_code == 200
    assert client.get("/globalalerts/http.connections").status_code == 200


def test_kind_checked_per_path(client: TestClient) -> None:
    response = client.post("/globalalerttemplates", json=alert())
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "kind"


def test_openapi_and_health(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/globalalerts/{name}" in spec["paths"] and f"{API}/globalalerttemplates" in spec["paths"]
    body = spec["paths"]["/globalalerts"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml"} <= set(body)
    assert client.get("/healthz").json() == {"status": "ok"}
