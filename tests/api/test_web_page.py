"""The Alerts page (``GET /ui``): content, escaping, the alert filter, bearer tokens, and a real headless browser."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.store import SqlAlertRepository
from evaluator.alerts import AlertStatus, ErrorCondition
from evaluator.events import Event, SqlEventStore
from tests.api.support import EvaluatorProcess, alert, make_client

CHROMIUM = Path("/usr/bin/chromium")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
READ = "r" * 20
WRITE = "w" * 20


def add_events(url: str, *events: Event) -> None:
    engine = sa.create_engine(url)
    try:
        SqlEventStore(engine).add(list(events))
    finally:
        engine.dispose()


def event(name: str, description: str, minutes_ago: int = 0) -> Event:
    return Event(
        time=NOW - timedelta(minutes=minutes_ago),
        alert=name,
        description=description,
        severity=80,
        record={},
        key=description,
    )


def test_page_lists_alerts_and_events_escaped(sqlite_client: TestClient, sqlite_url: str) -> None:
    assert sqlite_client.post("/globalalerts", json=alert("ssh-deny")).status_code == 201
    assert sqlite_client.post("/globalalerts", json=alert("other", dataSet="flows", severity=20)).status_code == 201
    add_events(sqlite_url, event("ssh-deny", "<script>alert(1)</script> & more"), event("other", "other fired", 1))
    page = sqlite_client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    body = page.text
    assert '<a href="/ui?alert=ssh-deny">ssh-deny</a>' in body and '<a href="/ui?alert=other">other</a>' in body
    assert "5m0s" in body and "flows" in body and "not run yet" in body
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body
    assert "other fired" in body and "2026-01-02T03:04:05Z" in body


def test_alert_filter(sqlite_client: TestClient, sqlite_url: str) -> None:
    assert sqlite_client.post("/globalalerts", json=alert("ssh-deny")).status_code == 201
    add_events(sqlite_url, event("ssh-deny", "ssh event"), event("other", "other event", 1))
    body = sqlite_client.get("/ui", params={"alert": "ssh-deny"}).text
    assert "ssh event" in body and "other event" not in body
    assert '<tr class="selected">' in body and '<a href="/ui">show all</a>' in body
    assert "No events." in sqlite_client.get("/ui", params={"alert": "absent"}).text
    assert sqlite_client.get("/ui", params={"alert": "x" * 254}).status_code == 400


def test_status_and_newest_error(sqlite_client: TestClient, sqlite_url: str) -> None:
    assert sqlite_client.post("/globalalerts", json=alert("ssh-deny")).status_code == 201
    errors = (ErrorCondition("QueryError", "old error"), ErrorCondition("QueryError", "new <b>error</b>"))
    status = AlertStatus(active=True, healthy=False, executionState="Failed", lastExecuted=NOW, errorConditions=errors)
    engine = sa.create_engine(sqlite_url)
    try:
        SqlAlertRepository(engine).write_status("ssh-deny", status)
    finally:
        engine.dispose()
    body = sqlite_client.get("/ui").text
    assert '<span class="good">active</span>' in body and '<span class="bad">unhealthy</span>' in body
    assert "<td>Failed</td>" in body and "2026-01-02T03:04:05Z" in body
    assert "QueryError: new &lt;b&gt;error&lt;/b&gt;" in body and "old error" not in body


def test_empty_page(sqlite_client: TestClient) -> None:
    body = sqlite_client.get("/ui").text
    assert "No GlobalAlerts." in body and "No events." in body


@pytest.fixture
def secured(sqlite_url: str) -> Iterator[TestClient]:
    with make_client(sqlite_url, read_tokens=(READ,), write_tokens=(WRITE,)) as client:
        yield client


def test_page_needs_a_read_token(secured: TestClient) -> None:
    missing = secured.get("/ui")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert secured.get("/ui", headers={"Authorization": f"Bearer {'x' * 20}"}).status_code == 401
    assert secured.get("/ui", headers={"Authorization": f"Bearer {READ}"}).status_code == 200
    assert secured.get("/ui", headers={"Authorization": f"Bearer {WRITE}"}).status_code == 200
    assert "/ui" not in secured.get("/openapi.json").json()["paths"]


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    argv += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    argv += [f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.browser
def test_page_in_headless_chromium(evaluator: EvaluatorProcess, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup (it installs Debian's chromium)")
    server = evaluator.start()
    assert httpx.post(f"{server}/globalalerts", json=alert("ssh-deny"), timeout=10).status_code == 201

    dom = chromium("--dump-dom", f"{server}/ui", profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr
    assert '<a href="/ui?alert=ssh-deny">ssh-deny</a>' in dom.stdout and "<td>flows</td>" in dom.stdout

    png = tmp_path / "ui.png"
    shot = chromium(f"--screenshot={png}", "--window-size=1200,800", f"{server}/ui", profile=tmp_path / "profile-shot")
    assert shot.returncode == 0, shot.stderr
    assert png.exists() and png.stat().st_size > 5_000, png
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
