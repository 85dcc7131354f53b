"""HTTP method semantics: HEAD wherever GET works, and a 405 whose Allow lists every method at that path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.support import alert


@pytest.mark.parametrize("path", ["/globalalerts", "/globalalerts/ssh-deny", "/events", "/healthz", "/metrics", "/ui"])
def test_head_is_get_without_the_body(client: TestClient, path: str) -> None:
    assert client.post("/globalalerts", json=alert()).status_code == 201
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # the request counter moved between the two
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))


def test_head_of_a_missing_object_is_404_without_a_body(client: TestClient) -> None:
    head = client.head("/globalalerts/nope")
    assert head.status_code == 404 and head.content == b""


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/globalalerts", {"GET", "HEAD", "POST"}),
        ("POST", "/globalalerts/ssh-deny", {"GET", "HEAD", "PUT", "DELETE"}),
        ("PUT", "/apis/projectcalico.org/v3/globalalerttemplates", {"GET", "HEAD", "POST"}),
        ("PATCH", "/events", {"GET", "HEAD"}),
        ("GET", "/datasets/flows/_bulk", {"POST"}),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed <= listed and method not in listed, listed
    assert response.json()["reason"] == "MethodNotAllowed"


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("text/csv", 406),
        ("application/xml, text/html", 406),
        ("text/html;q=0.9, application/json;q=0", 406),
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", 200),  # what kubectl get sends
        ("application/vnd.kubernetes.protobuf, */*", 200),
        ("application/yaml", 200),
        ("", 200),
    ],
)
def test_an_accept_the_api_cannot_serve_is_406(client: TestClient, accept: str, status: int) -> None:
    for path in ("/globalalerts", "/events"):
        response = client.get(path, headers={"accept": accept})
        assert response.status_code == status, (path, response.text)
        if status == 406:
            body = response.json()
            assert body["reason"] == "NotAcceptable" and "application/json" in body["message"]


def test_pages_and_metrics_keep_their_own_types(client: TestClient) -> None:
    assert client.get("/ui", headers={"accept": "text/html"}).status_code == 200
    assert client.get("/metrics", headers={"accept": "text/plain"}).status_code == 200
