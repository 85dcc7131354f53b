"""The Alerts page's sign-in against a real evaluator over HTTP (no browser needed): the cookie is Secure under
TLS, an authenticating proxy's user header from a trusted address names the user (its addresses are checked in
tests/api/test_web_page.py), and bad settings stop the start."""

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


def test_tls_cookie_and_a_trusted_proxy_user(evaluator: EvaluatorProcess, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    url = start_secured(evaluator, *tls, *PROXY, "--trusted-proxy-role", "write", scheme="https", ca=str(cert))
    engine = sa.create_engine(f"sqlite:///{evaluator.tmp_path / 'server.db'}")
    SqlEventStore(engine).add([Event(time=datetime.now(UTC), alert="a", description="d", severity=50, record={})])
    engine.dispose()
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert))) as client:
        # a pasted token: the cookie is Secure under TLS
        assert 'action="/ui/signin"' in client.get("/ui").text
        done = client.post("/ui/signin", data={"token": WRITE, "next": "/ui"}, headers={"Origin": url})
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "Secure" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and WRITE not in cookie
        client.cookies.clear()

        # the proxy's user header from a trusted address (loopback), with its own form token
        user = {"X-Forwarded-User": "judy@example.com"}
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


def test_bad_sign_in_settings_are_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PROXY, "--trusted-proxy-addresses", "10.0.0.0/8,proxy.example"]) == 2
    assert "trusted proxy address 'proxy.example': expected an address or CIDR" in capsys.readouterr().err
    assert main(["--session-lifetime", "0s"]) == 2
    assert "session_lifetime: '0s' must be a positive duration" in capsys.readouterr().err
