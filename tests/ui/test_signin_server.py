"""The Alerts page's sign-in against a real evaluator over HTTP (no browser needed): the cookie is Secure under
TLS, and an authenticating proxy's user header is believed only from the configured addresses."""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.server import main
from api.web.session import COOKIE
from evaluator.events import Event, SqlEventStore
from tests.api.support import EvaluatorProcess, self_signed
from tests.ui.conftest import READ, WRITE, start_secured

PROXY = ("--trusted-proxy-header", "X-Forwarded-User")
DISMISS_FORM = r'action="/ui/events/([0-9a-f]{64})/dismiss"><input type="hidden" name="csrf" value="([^"]+)"'


def test_the_session_cookie_is_secure_under_tls(evaluator: EvaluatorProcess, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    url = evaluator.start(*tls, env={"POLICYWATCH_WRITE_TOKENS": WRITE}, scheme="https", ca=str(cert))
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert))) as client:
        assert 'action="/ui/signin"' in client.get("/ui").text
        done = client.post("/ui/signin", data={"token": WRITE, "next": "/ui"}, headers={"Origin": url})
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "Secure" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and WRITE not in cookie


def test_proxy_user_from_a_trusted_address(evaluator: EvaluatorProcess) -> None:
    url = start_secured(evaluator, *PROXY, "--trusted-proxy-role", "write")
    engine = sa.create_engine(f"sqlite:///{evaluator.tmp_path / 'server.db'}")
    SqlEventStore(engine).add([Event(time=datetime.now(UTC), alert="a", description="d", severity=50, record={})])
    engine.dispose()
    user = {"X-Forwarded-User": "judy@example.com"}
    with httpx.Client(base_url=url) as client:
        page = client.get("/ui", headers=user)
        assert "judy@example.com (write)" in page.text and 'id="signout"' not in page.text
        match = re.search(DISMISS_FORM, page.text)
        assert match is not None
        event_id, csrf = match.groups()
        origin = {**user, "Origin": url}
        refused = client.post(f"/ui/events/{event_id}/dismiss", data={"csrf": "guess"}, headers=origin)
        assert refused.status_code == 403
        other = {"X-Forwarded-User": "mallory", "Origin": url}  # another user's form token does not fit
        assert client.post(f"/ui/events/{event_id}/dismiss", data={"csrf": csrf}, headers=other).status_code == 403
        done = client.post(f"/ui/events/{event_id}/dismiss", data={"csrf": csrf}, headers=origin)
        assert done.status_code == 303
        api = client.get("/events", headers={"Authorization": f"Bearer {READ}"}).json()
        assert api["items"][0]["dismissed"]["by"] == "judy@example.com"


def test_proxy_header_from_elsewhere_is_ignored(evaluator: EvaluatorProcess) -> None:
    url = start_secured(evaluator, *PROXY, "--trusted-proxy-addresses", "10.0.0.0/8")
    page = httpx.get(f"{url}/ui", headers={"X-Forwarded-User": "judy@example.com"})
    assert page.status_code == 200 and 'action="/ui/signin"' in page.text and "judy" not in page.text


def test_bad_sign_in_settings_are_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PROXY, "--trusted-proxy-addresses", "10.0.0.0/8,proxy.example"]) == 2
    assert "trusted proxy address 'proxy.example': expected an address or CIDR" in capsys.readouterr().err
    assert main(["--session-lifetime", "0s"]) == 2
    assert "session lifetime '0s' must be positive" in capsys.readouterr().err
