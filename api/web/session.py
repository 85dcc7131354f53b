"""Signed session cookies of the Alerts page (stdlib ``hmac``; the token itself is never in the cookie).

A session is ``base64url(JSON) "." base64url(HMAC-SHA256)``. The key is derived from every configured token,
so sessions survive restarts and are shared by replicas with the same tokens, and rotating any token ends
them all. The session names its token by a keyed digest: each request re-checks that the token is still
configured and what it may do, so a removed token's sessions stop working at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

COOKIE = "policywatch_session"
MAX_NAME = 64


class SessionError(ValueError):
    """A cookie that is no (longer a) valid session; the message says which, for the sign-in page."""


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    token_digest: str  # SessionKeys.token_digest of the token signed in with
    expires: int  # Unix seconds
    nonce: str  # per sign-in; the CSRF token is derived from it


class SessionKeys:
    def __init__(
        self,
        read_tokens: Iterable[str],
        write_tokens: Iterable[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        material = "\n".join(sorted(write_tokens)) + "\x00" + "\n".join(sorted(read_tokens))
        self._key = hmac.new(b"policywatch-ui-session-v1", material.encode(), hashlib.sha256).digest()
        self._clock = clock

    def _mac(self, purpose: str, data: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\x00{data}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def token_digest(self, token: str) -> str:
        return self._mac("token", token)

    def new_session(self, *, user: str, token: str, lifetime_seconds: int) -> Session:
        expires = int(self._clock()) + lifetime_seconds
        return Session(user=user, token_digest=self.token_digest(token), expires=expires, nonce=secrets.token_hex(16))

    def encode(self, session: Session) -> str:
        payload = {"u": session.user, "t": session.token_digest, "exp": session.expires, "n": session.nonce}
        data = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
        return f"{data}.{self._mac('session', data)}"

    def decode(self, cookie: str) -> Session:
        data, _, mac = cookie.partition(".")
        if not data or not hmac.compare_digest(mac.encode(), self._mac("session", data).encode()):
            raise SessionError("the session cookie is not one this server signed; sign in again")
        try:
            payload = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
            session = Session(
                user=str(payload["u"]), token_digest=str(payload["t"]), expires=int(payload["exp"]), nonce=payload["n"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SessionError("the session cookie is malformed; sign in again") from exc
        if session.expires <= self._clock():
            raise SessionError("your session has expired; sign in again")
        return session

    def csrf_token(self, subject: str) -> str:
        """The form token of a session (its nonce) or of a proxy-named user."""
        return self._mac("csrf", subject)
