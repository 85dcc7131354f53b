"""The Alerts page (``GET /ui``) through the app: content and escaping, filters in the URL, paging, the sign-in
under tokens (cookie attributes, wrong token, forged and expired sessions, CSRF and Origin), dismissing (page and
API agree), the trusted proxy header and the Alertmanager silence link. The browser tests are in tests/ui/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.routes import web
from api.store import SqlAlertRepository
from api.web.session import COOKIE, SessionKeys
from evaluator.alerts import AlertStatus, ErrorCondition
from evaluator.events import Event, SqlEventStore
from tests.api.support import alert, make_client

NOW = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
READ = "r" * 20
WRITE = "w" * 20
ORIGIN = {"Origin": "http://testserver"}


def add_events(url: str, *events: Event) -> None:
    engine = sa.create_engine(url)
    try:
        SqlEventStore(engine).add(list(events))
    finally:
        engine.dispose()


def event(name: str, description: str, minutes_ago: int = 0, severity: int = 80, **record: Any) -> Event:
    return Event(
        time=NOW - timedelta(minutes=minutes_ago),
        alert=name,
        description=description,
        severity=severity,
        record=record,
        key=description,
    )


def dns_alert(name: str, **changes: Any) -> dict[str, Any]:
    body = alert(name, dataSet="dns", description="dns seen", query="qtype=A", aggregateBy=["client_namespace"])
    del body["spec"]["field"]
    body["spec"].update(metric="count", **changes)
    return body


def event_ids(body: str) -> list[str]:
    return re.findall(r'<tr class="event" data-id="([0-9a-f]{64})">', body)


def test_page_lists_alerts_and_events_escaped(sqlite_client: TestClient, sqlite_url: str) -> None:
    assert sqlite_client.post("/globalalerts", json=alert("ssh-deny")).status_code == 201
    assert sqlite_client.post("/globalalerts", json=dns_alert("other", severity=20)).status_code == 201
    add_events(
        sqlite_url,
        event("ssh-deny", "<script>alert(1)</script> & more", source_namespace="<b>ns</b>"),
        event("other", "other fired", 1, severity=20),
        event("gone", "of a deleted alert", 2, severity=5),
    )
    page = sqlite_client.get("/ui", params={"refresh": "off"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    body = page.text
    assert body.count("<script>") == 1  # only the page's own, allowed by its hash
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body
    assert "&quot;source_namespace&quot;: &quot;&lt;b&gt;ns&lt;/b&gt;&quot;" in body  # the record, escaped
    assert '<a href="/ui?alert=ssh-deny&amp;refresh=off">ssh-deny</a>' in body
    assert 'gone <span class="muted">(deleted)</span>' in body
    # to the second, UTC in the HTML; the machine-readable value keeps the microseconds for the script
    assert '<time datetime="2026-01-02T03:04:05.123456Z">2026-01-02T03:04:05Z</time>' in body
    for css in ("sev-critical", "sev-medium", "sev-low", "health-none"):
        assert css in body
    assert "not run yet" in body and "http-equiv" not in body  # refresh=off
    refreshing = sqlite_client.get("/ui").text
    assert '<noscript><meta http-equiv="refresh" content="60; url=/ui"></noscript>' in refreshing
    assert '<body data-refresh="60" data-refresh-url="/ui">' in refreshing


def test_filters_are_in_the_url_and_combine(sqlite_client: TestClient, sqlite_url: str) -> None:
    assert sqlite_client.post("/globalalerts", json=alert("ssh-deny")).status_code == 201
    assert sqlite_client.post("/globalalerts", json=dns_alert("dns-a")).status_code == 201
    add_events(
        sqlite_url,
        event("ssh-deny", "ssh high", 0, severity=90),
        event("ssh-deny", "ssh low", 10, severity=10),
        event("dns-a", "dns mid", 20, severity=50),
        event("ssh-deny", "ssh old", 60 * 24 * 3, severity=60),
    )

    def shown(**params: str) -> list[str]:
        body = sqlite_client.get("/ui", params=params).text
        return re.findall(r"(ssh high|ssh low|dns mid|ssh old)<details>", body)

    assert shown() == ["ssh high", "ssh low", "dns mid", "ssh old"]  # newest first
    assert shown(alert="ssh-deny") == ["ssh high", "ssh low", "ssh old"]
    assert shown(dataset="dns") == ["dns mid"]
    assert shown(sevmin="20", sevmax="80") == ["dns mid", "ssh old"]
    assert shown(since="2026-01-02T02:50:00Z") == ["ssh high", "ssh low"]
    assert shown(until="2026-01-01T00:00:00Z") == ["ssh old"]
    assert shown(alert="ssh-deny", sevmin="50") == ["ssh high", "ssh old"]
    assert shown(sort="severity") == ["ssh high", "ssh old", "dns mid", "ssh low"]  # then newest
    body = sqlite_client.get("/ui", params={"alert": "ssh-deny", "sevmin": "50"}).text
    assert '<tr class="selected" data-alert="ssh-deny">' in body
    assert 'url=/ui?alert=ssh-deny&amp;sevmin=50"' in body  # auto-refresh keeps the filters
    assert 'data-refresh-url="/ui?alert=ssh-deny&amp;sevmin=50"' in body
    assert '<input id="f-sevmin" name="sevmin" value="50"' in body


def test_the_forms_empty_fields_redirect_to_a_short_link(sqlite_client: TestClient) -> None:
    form = {"alert": "a", "dataset": "", "sevmin": "50", "sevmax": "", "since": "", "show": "open", "refresh": "60"}
    answer = sqlite_client.get("/ui", params=form, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui?alert=a&sevmin=50"


def test_alerts_beyond_the_first_page_are_not_taken_for_deleted(
    sqlite_client: TestClient, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "MAX_ALERTS", 1)
    assert sqlite_client.post("/globalalerts", json=alert("a-first")).status_code == 201
    assert sqlite_client.post("/globalalerts", json=dns_alert("b-second")).status_code == 201
    add_events(sqlite_url, event("b-second", "dns fired"), event("a-first", "flows fired", 1))
    body = sqlite_client.get("/ui").text
    assert 'data-alert="b-second"' not in body and "Only the first 1 GlobalAlerts" in body
    assert "(deleted)" not in body and '<a href="/ui?alert=b-second">b-second</a>' in body
    assert "dns fired<details>" in sqlite_client.get("/ui", params={"dataset": "dns"}).text


def test_bad_filters_are_named_not_500(sqlite_client: TestClient) -> None:
    page = sqlite_client.get("/ui", params={"sevmin": "high", "dataset": "<x>", "since": "soon", "show": "x"})
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    for message in ("sevmin: &#x27;high&#x27;", "dataset: &#x27;&lt;x&gt;&#x27;", "since: &#x27;soon&#x27;", "show:"):
        assert message in page.text
    assert "refresh: &#x27;1&#x27; is not a whole number from 2 to 3600" in sqlite_client.get("/ui?refresh=1").text
    assert 'data-refresh="7"' in sqlite_client.get("/ui?refresh=7").text
    inverted = sqlite_client.get("/ui", params={"sevmin": "80", "sevmax": "20"})
    assert inverted.status_code == 400 and "sevmin (80) must not be above sevmax (20)" in inverted.text
    assert sqlite_client.get("/ui", params={"alert": "x" * 254}).status_code == 400


def test_paging(sqlite_client: TestClient, sqlite_url: str) -> None:
    add_events(sqlite_url, *(event("a", f"e{i:02d}", i) for i in range(60)))
    first = sqlite_client.get("/ui", params={"refresh": "off"}).text
    assert "events 1-50 of 60" in first and "e00<details>" in first and "e50<details>" not in first
    assert '<a id="older" href="/ui?page=2&amp;refresh=off">older</a>' in first and 'id="newer"' not in first
    second = sqlite_client.get("/ui", params={"refresh": "off", "page": "2"}).text
    assert "events 51-60 of 60" in second and "e59<details>" in second and "e49<details>" not in second
    assert 'id="newer"' in second and 'id="older"' not in second


def test_status_and_errors(sqlite_client: TestClient, sqlite_url: str) -> None:
    assert sqlite_client.post("/globalalerts", json=alert("ssh-deny")).status_code == 201
    errors = (ErrorCondition("QueryError", "old error"), ErrorCondition("QueryError", "new <b>error</b>"))
    status = AlertStatus(active=True, healthy=False, executionState="Failed", lastExecuted=NOW, errorConditions=errors)
    engine = sa.create_engine(sqlite_url)
    try:
        SqlAlertRepository(engine).write_status("ssh-deny", status)
    finally:
        engine.dispose()
    body = sqlite_client.get("/ui").text
    assert '<span class="health health-bad"></span><span class="bad">unhealthy</span>' in body
    assert "<td>Failed</td>" in body and "QueryError: new &lt;b&gt;error&lt;/b&gt;" in body


def test_open_mode_dismisses_with_csrf(sqlite_client: TestClient, sqlite_url: str) -> None:
    """No tokens (loopback only): everyone may dismiss, but only from the page itself."""
    add_events(sqlite_url, event("a", "first"), event("a", "second", 1))
    body = sqlite_client.get("/ui").text
    first, second = event_ids(body)
    csrf = re.search(r'name="csrf" value="([^"]+)"', body)
    assert csrf is not None
    form = {"csrf": csrf.group(1), "next": "/ui?alert=a"}
    assert sqlite_client.post(f"/ui/events/{first}/dismiss", data=form).status_code == 403  # no Origin
    evil = {"Origin": "http://evil.example"}
    assert sqlite_client.post(f"/ui/events/{first}/dismiss", data=form, headers=evil).status_code == 403
    wrong = {**form, "csrf": "x" * 43}
    assert sqlite_client.post(f"/ui/events/{first}/dismiss", data=wrong, headers=ORIGIN).status_code == 403
    done = sqlite_client.post(f"/ui/events/{first}/dismiss", data=form, headers=ORIGIN, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui?alert=a"
    assert event_ids(sqlite_client.get("/ui").text) == [second]  # left the default view
    dismissed = sqlite_client.get("/ui", params={"show": "dismissed"}).text
    assert event_ids(dismissed) == [first] and 'dismissed by <span class="by">anonymous</span>' in dismissed
    absent = sqlite_client.post(f"/ui/events/{'0' * 64}/dismiss", data=form, headers=ORIGIN)
    assert absent.status_code == 404 and "not found" in absent.text


def test_api_dismiss_and_the_dismissed_filter(sqlite_client: TestClient, sqlite_url: str) -> None:
    add_events(sqlite_url, event("a", "first"), event("a", "second", 1))
    items = sqlite_client.get("/events").json()["items"]
    assert [i["dismissed"] for i in items] == [None, None]
    first = items[0]["id"]
    done = sqlite_client.post(f"/events/{first}/dismiss", json={"by": "alice"})
    assert done.status_code == 200 and done.json()["dismissed"]["by"] == "alice"
    at = done.json()["dismissed"]["at"]
    again = sqlite_client.post(f"/events/{first}/dismiss", json={"by": "bob"})  # the first dismissal stays
    assert again.status_code == 200 and again.json()["dismissed"] == {"by": "alice", "at": at}
    assert [i["description"] for i in sqlite_client.get("/events?dismissed=true").json()["items"]] == ["first"]
    assert [i["description"] for i in sqlite_client.get("/events?dismissed=false").json()["items"]] == ["second"]
    assert len(sqlite_client.get("/events").json()["items"]) == 2
    assert sqlite_client.post(f"/events/{'0' * 64}/dismiss").status_code == 404
    assert sqlite_client.post("/events/nothex/dismiss").status_code == 400
    bad = sqlite_client.post(f"/events/{first}/dismiss", json={"by": ""})
    assert bad.status_code == 400 and "body.by" in bad.json()["message"]


@pytest.fixture
def secured(sqlite_url: str) -> Iterator[TestClient]:
    with make_client(sqlite_url, read_tokens=(READ,), write_tokens=(WRITE,)) as client:
        yield client


def sign_in(client: TestClient, token: str, name: str = "") -> Any:
    form = {"token": token, "name": name, "next": "/ui?refresh=off"}
    return client.post("/ui/signin", data=form, headers=ORIGIN, follow_redirects=False)


def test_without_credentials_the_page_is_the_sign_in_form(secured: TestClient) -> None:
    page = secured.get("/ui", params={"alert": "a"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/ui/signin">' in page.text and 'type="password"' in page.text
    assert 'name="next" value="/ui?alert=a"' in page.text
    assert secured.get("/events").status_code == 401  # the API is as before: bearer tokens only
    assert secured.get("/ui", headers={"Authorization": f"Bearer {READ}"}).status_code == 200
    assert secured.get("/ui", headers={"Authorization": f"Bearer {'x' * 20}"}).status_code == 401
    assert "/ui" not in secured.get("/openapi.json").json()["paths"]


def test_sign_in_sets_a_signed_http_only_strict_cookie(secured: TestClient) -> None:
    wrong = sign_in(secured, "x" * 20)
    assert wrong.status_code == 401 and "not one of this evaluator" in wrong.text and "set-cookie" not in wrong.headers
    done = sign_in(secured, READ, name="carol")
    assert done.status_code == 303 and done.headers["location"] == "/ui?refresh=off"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and READ not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie and "Secure" not in cookie
    page = secured.get("/ui")
    assert page.status_code == 200 and "carol (read)" in page.text and 'class="dismiss"' not in page.text
    assert secured.get("/events").status_code == 401  # a session is for the page, not the API
    out = secured.post("/ui/signout", headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert 'action="/ui/signin"' in secured.get("/ui").text


def test_cross_site_sign_in_is_refused(secured: TestClient) -> None:
    form = {"token": WRITE, "next": "/ui"}
    refused = secured.post("/ui/signin", data=form, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Origin": "https://testserver"}, 303),  # a proxy in front ended TLS
        ({"Referer": "http://testserver/ui/signin"}, 303),  # no Origin: the Referer decides
        ({"Origin": "null"}, 403),
        ({"Origin": "http://testserver.evil.example"}, 403),
        ({"Origin": "http://evil.example", "Referer": "http://testserver/ui"}, 403),  # Origin wins
        ({}, 403),
    ],
)
def test_form_posts_must_come_from_this_host(secured: TestClient, headers: dict[str, str], code: int) -> None:
    form = {"token": WRITE, "next": "/ui"}
    assert secured.post("/ui/signin", data=form, headers=headers, follow_redirects=False).status_code == code


def test_forged_and_expired_sessions_are_refused(secured: TestClient) -> None:
    keys = SessionKeys((READ,), (WRITE,))
    forged = SessionKeys(("f" * 20,), ("g" * 20,)).encode(
        SessionKeys(("f" * 20,), ("g" * 20,)).new_session(user="mallory", token="g" * 20, lifetime_seconds=600)
    )
    secured.cookies.set(COOKIE, forged, path="/ui")
    page = secured.get("/ui")
    assert "not one this server signed" in page.text and "mallory" not in page.text
    assert "Max-Age=0" in page.headers["set-cookie"]  # the bad cookie is cleared
    past = SessionKeys((READ,), (WRITE,), clock=lambda: time.time() - 3600)
    expired = past.encode(past.new_session(user="dave", token=WRITE, lifetime_seconds=60))
    secured.cookies.set(COOKIE, expired, path="/ui")
    assert "your session has expired" in secured.get("/ui").text
    tampered = keys.encode(keys.new_session(user="erin", token=READ, lifetime_seconds=60))
    data, mac = tampered.split(".")
    secured.cookies.set(COOKIE, data[:-2] + "xx." + mac, path="/ui")
    assert "not one this server signed" in secured.get("/ui").text
    removed = keys.encode(keys.new_session(user="frank", token="z" * 20, lifetime_seconds=60))
    secured.cookies.set(COOKIE, removed, path="/ui")
    assert "no longer configured" in secured.get("/ui").text


def test_dismiss_needs_a_write_session_and_its_csrf_token(secured: TestClient, sqlite_url: str) -> None:
    add_events(sqlite_url, event("a", "first"))
    sign_in(secured, READ)
    body = secured.get("/ui").text
    [first] = event_ids(body)
    csrf = re.search(r'name="csrf" value="([^"]+)"', body)  # the sign-out form's
    assert csrf is not None
    read_only = secured.post(f"/ui/events/{first}/dismiss", data={"csrf": csrf.group(1)}, headers=ORIGIN)
    assert read_only.status_code == 403 and "needs a write token" in read_only.text
    sign_in(secured, WRITE, name="grace")
    body = secured.get("/ui").text
    match = re.search(r'action="/ui/events/[0-9a-f]+/dismiss"><input type="hidden" name="csrf" value="([^"]+)"', body)
    assert match is not None
    assert secured.post(f"/ui/events/{first}/dismiss", data={"csrf": csrf.group(1)}, headers=ORIGIN).status_code == 403
    form = {"csrf": match.group(1), "next": "/ui?show=all"}
    done = secured.post(f"/ui/events/{first}/dismiss", data=form, headers=ORIGIN, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui?show=all"
    api = secured.get("/events", params={"dismissed": "true"}, headers={"Authorization": f"Bearer {READ}"}).json()
    assert [(i["id"], i["dismissed"]["by"]) for i in api["items"]] == [(first, "grace")]


def test_bearer_writes_dismiss_under_the_token_name(secured: TestClient, sqlite_url: str) -> None:
    add_events(sqlite_url, event("a", "first"))
    items = secured.get("/events", headers={"Authorization": f"Bearer {READ}"}).json()["items"]
    path = f"/events/{items[0]['id']}/dismiss"
    assert secured.post(path, headers={"Authorization": f"Bearer {READ}"}).status_code == 403
    done = secured.post(path, headers={"Authorization": f"Bearer {WRITE}"})
    assert done.status_code == 200 and re.fullmatch(r"token [0-9a-f]{8}", done.json()["dismissed"]["by"])


def test_trusted_proxy_header_only_from_configured_addresses(sqlite_url: str) -> None:
    settings: dict[str, Any] = {"read_tokens": (READ,), "write_tokens": (WRITE,)}
    header = {"X-Forwarded-User": "heidi@example.com"}
    app = make_client(sqlite_url, trusted_proxy_header="X-Forwarded-User", **settings).app
    with TestClient(app, client=("127.0.0.1", 40000)) as client:  # the default: loopback
        assert "heidi@example.com (read)" in client.get("/ui", headers=header).text
    with TestClient(app, client=("192.0.2.1", 40000)) as client:
        assert 'action="/ui/signin"' in client.get("/ui", headers=header).text
    app = make_client(sqlite_url, trusted_proxy_header="X-Forwarded-User", trusted_proxy_addresses="10.0.0.0/8",
                      **settings).app  # fmt: skip
    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        assert 'action="/ui/signin"' in client.get("/ui", headers=header).text
    with TestClient(app, client=("10.1.2.3", 40000)) as client:
        assert "heidi@example.com (read)" in client.get("/ui", headers=header).text
    with TestClient(make_client(sqlite_url, **settings).app, client=("127.0.0.1", 40000)) as client:
        assert 'action="/ui/signin"' in client.get("/ui", headers=header).text  # no header configured: ignored


def test_without_tokens_a_trusted_proxy_still_names_the_user(sqlite_url: str) -> None:
    app = make_client(sqlite_url, trusted_proxy_header="X-Forwarded-User").app
    header = {"X-Forwarded-User": "kim"}
    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        assert "kim (write)" in client.get("/ui", headers=header).text
    with TestClient(app, client=("192.0.2.1", 40000)) as client:  # not a configured address
        assert "anonymous (write)" in client.get("/ui", headers=header).text


def test_silence_links_when_alertmanager_is_configured(sqlite_url: str) -> None:
    with make_client(sqlite_url, alertmanager_url="http://am.example:9093") as client:
        assert client.post("/globalalerts", json=alert("ssh-deny")).status_code == 201
        add_events(sqlite_url, event("ssh-deny", "fired", source_namespace="prod", source_name_aggr="web-*"))
        body = client.get("/ui").text
    links = re.findall(r'class="silence" href="([^"]+)"', body)
    assert links[0] == "http://am.example:9093/#/silences/new?filter=%7Balertname%3D%22ssh-deny%22%7D"
    assert "source_namespace%3D%22prod%22" in links[1] and "severity%3D%2280%22" in links[1]
    with make_client(sqlite_url) as client:
        assert 'class="silence"' not in client.get("/ui").text
