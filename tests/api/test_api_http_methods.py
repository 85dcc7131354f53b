"""HTTP method semantics: HEAD wherever GET works, and a 405 whose Allow lists every method at that path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.support import alert


@pytest.mark.parametrize("path", ["/globalalerts", "/globalalerts/ssh-deny", "/events", "/healthz", "/metrics", "/ui"])
def test_head_is_get_without_the_body(sqlite_client: TestClient, path: str) -> None:
    assert sqlite_client.post("/globalalerts", json=alert()).status_code == 201
    got = sqlite_client.get(path)
    head = sqlite_client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # the request counter moved between the two
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))


def test_head_of_a_missing_object_is_404_without_a_body(sqlite_client: TestClient) -> None:
    head = sqlite_client.head("/globalalerts/nope")
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
    sqlite_client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = sqlite_client.request(method, path)
    assert response.status_code == 405
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed <= listed and method not in listed, listed
    assert response.json()["reason"] == "MethodNotAllowed"
