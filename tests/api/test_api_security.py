"""Security of the evaluator: safe settings at start, bearer tokens with read/write roles, body limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.settings import Settings
from tests.api.support import alert, make_client

READ = "r" * 20
WRITE = "w" * 20


def test_loopback_default_needs_no_tokens() -> None:
    settings = Settings(database_url="sqlite://")
    assert settings.host == "127.0.0.1" and not settings.auth_enabled


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.org"])
def test_off_loopback_without_tokens_is_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="refusing to listen on"):
        Settings(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert Settings(host=host).host == host


def test_tokens_one_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICYWATCH_WRITE_TOKENS", f"{WRITE}\n{WRITE}2\n")
    assert Settings().write_tokens == (WRITE, WRITE + "2")


def test_off_loopback_with_tokens_is_allowed() -> None:
    settings = Settings(host="0.0.0.0", write_tokens=(WRITE,))
    assert settings.auth_enabled


def test_tokens_from_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POLICYWATCH_READ_TOKENS", f"{READ}, {READ}x\n")
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# comment\nwrite {WRITE}\n\nread {'q' * 16}  # trailing\n")
    settings = Settings(token_file=token_file)
    assert settings.read_tokens == (READ, READ + "x", "q" * 16)
    assert settings.write_tokens == (WRITE,)


@pytest.mark.parametrize(
    ("content", "fragment"), [("admin abcdefghijklmnopq\n", "expected 'read TOKEN'"), ("write short\n", "too short")]
)
def test_bad_token_file(tmp_path: Path, content: str, fragment: str) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(content)
    with pytest.raises(ValidationError, match=fragment):
        Settings(token_file=token_file)


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read token file"):
        Settings(token_file=tmp_path / "absent")


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ValidationError, match="both"):
        Settings(tls_cert_file=cert)
    with pytest.raises(ValidationError, match="does not exist"):
        Settings(tls_cert_file=cert, tls_key_file=tmp_path / "absent.pem")


def test_bad_flush_interval() -> None:
    with pytest.raises(ValidationError, match="invalid duration"):
        Settings(flow_logs_flush_interval="5 minutes")


@pytest.fixture
def secured(sqlite_url: str) -> Iterator[TestClient]:
    with make_client(sqlite_url, read_tokens=(READ,), write_tokens=(WRITE,)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_and_roles(secured: TestClient) -> None:
    missing = secured.get("/globalalerts")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["reason"] == "Unauthorized"
    assert secured.get("/globalalerts", headers=bearer("x" * 20)).status_code == 401
    assert secured.get("/globalalerts", headers={"Authorization": f"Basic {READ}"}).status_code == 401
    assert secured.get("/globalalerts", headers=bearer(READ)).status_code == 200
    forbidden = secured.post("/globalalerts", json=alert(), headers=bearer(READ))
    assert forbidden.status_code == 403 and "write token" in forbidden.json()["message"]
    assert secured.post("/globalalerts", json=alert(), headers=bearer(WRITE)).status_code == 201
    assert secured.get("/globalalerts/ssh-deny", headers=bearer(WRITE)).status_code == 200
    assert secured.delete("/globalalerts/ssh-deny", headers=bearer(READ)).status_code == 403
    assert secured.delete("/globalalerts/ssh-deny", headers=bearer(WRITE)).status_code == 200
    # Unauthenticated: liveness, metrics and the API description.
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert secured.get(path).status_code == 200, path


def test_metrics_auth_guards_metrics_with_a_read_token(db_url: str) -> None:
    with make_client(db_url, read_tokens=(READ,), write_tokens=(WRITE,), metrics_auth=True) as guarded:
        assert guarded.get("/metrics").status_code == 401
        assert guarded.get("/metrics", headers=bearer("x" * 20)).status_code == 401
        text = guarded.get("/metrics", headers=bearer(READ))
        assert text.status_code == 200 and "policywatch_evaluator_http_requests_total" in text.text
        assert guarded.get("/healthz").status_code == 200  # liveness stays open
    with pytest.raises(ValidationError, match="--metrics-auth needs tokens"):
        Settings(database_url=db_url, metrics_auth=True)


def test_auth_failures_are_counted(secured: TestClient) -> None:
    secured.get("/globalalerts")
    metrics = secured.get("/metrics").text
    assert 'policywatch_evaluator_http_requests_total{code="401",method="GET",route="/globalalerts"} 1.0' in metrics


def test_body_over_one_mib_is_413(sqlite_client: TestClient) -> None:
    big = alert()
    big["spec"]["description"] = "x" * (1024 * 1024)
    response = sqlite_client.post("/globalalerts", json=big)
    assert response.status_code == 413 and response.json()["reason"] == "RequestEntityTooLarge"
    just_under = alert(description="y" * (1024 * 1024 - 2000))
    assert sqlite_client.post("/globalalerts", json=just_under).status_code == 201


def test_streamed_body_over_limit_is_413(sqlite_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    response = sqlite_client.post("/globalalerts", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_metrics_count_requests_by_route_template(sqlite_client: TestClient) -> None:
    sqlite_client.post("/globalalerts", json=alert())
    sqlite_client.get("/globalalerts/ssh-deny")
    sqlite_client.get("/globalalerts/other")
    sqlite_client.get("/apis/projectcalico.org/v3/globalalerts/ssh-deny")
    sqlite_client.get("/no/such/path")
    text = sqlite_client.get("/metrics").text
    for line in (
        'policywatch_evaluator_http_requests_total{code="201",method="POST",route="/globalalerts"} 1.0',
        'policywatch_evaluator_http_requests_total{code="200",method="GET",route="/globalalerts/{name}"} 1.0',
        'policywatch_evaluator_http_requests_total{code="404",method="GET",route="/globalalerts/{name}"} 1.0',
        'route="/apis/projectcalico.org/v3/globalalerts/{name}"',
        'policywatch_evaluator_http_requests_total{code="404",method="GET",route="unmatched"} 1.0',
    ):
        assert line in text, line


def test_database_outage_is_503_not_500(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gone' / 'db.sqlite'}"  # directory missing: every connection fails
    with make_client(url) as client:
        response = client.get("/globalalerts")
    assert response.status_code == 503 and response.json()["reason"] == "ServiceUnavailable"
    assert response.headers["retry-after"] == "5"
