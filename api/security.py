"""Bearer-token authorisation, as an app-wide dependency (so every router, present and future, gets it).

Two roles: read (GET, HEAD, OPTIONS) and write (every method; implies read). With no tokens configured
(the loopback-only default) every request passes. Liveness, metrics and the API description stay open.
The Alerts page (``/ui``, ``/ui/...``) without a bearer header signs the browser in itself (``api/web/auth.py``:
a signed cookie session or a trusted proxy's user header), since a browser cannot send a bearer header.
The token comes as ``Authorization: Bearer TOKEN``, or as the password of ``Authorization: Basic`` (what
Elasticsearch log shippers send; any user name).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request

from api.http import ApiError
from api.settings import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="policywatch", Basic realm="policywatch"'}
WEB_PREFIX = "/ui"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a name for records such as an event's ``dismissed.by``, and the role."""

    name: str
    can_write: bool


class Unauthorized(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(401, "Unauthorized", message, headers=CHALLENGE)


async def authorize(request: Request) -> None:
    settings = request.app.state.services.settings
    if not settings.auth_enabled or request.url.path in OPEN_PATHS:
        return
    if is_web_path(request.url.path) and "authorization" not in request.headers:
        return  # the page's own sign-in decides (api/web/auth.py); a bearer header is checked as anywhere
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer TOKEN, or Basic with the token as password)")
    can_write = _member(token, settings.write_tokens)
    if not (can_write or _member(token, settings.read_tokens)):
        raise Unauthorized("unknown bearer token")
    if request.method not in READ_METHODS and not can_write:
        raise ApiError(403, "Forbidden", f"this token may only read; {request.method} needs a write token")
    request.state.principal = Principal(token_name(token), can_write)


def is_web_path(path: str) -> bool:
    return path == WEB_PREFIX or path.startswith(WEB_PREFIX + "/")


def token_name(token: str) -> str:
    """A name for a token in records (not a secret: a short digest, enough to tell tokens apart)."""
    return "token " + hashlib.sha256(token.encode()).hexdigest()[:8]


def principal_name(request: Request) -> str:
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal.name if principal is not None else "anonymous"


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "basic" and token:
        return _basic_password(token)
    return token if scheme.lower() == "bearer" and token else None


def token_role(token: str, settings: Settings) -> bool | None:
    """True: a write token; False: a read token; None: not a token of these settings."""
    if _member(token, settings.write_tokens):
        return True
    return False if _member(token, settings.read_tokens) else None


def _basic_password(credentials: str) -> str | None:
    """The password of Basic credentials (the user name when the password is empty)."""
    try:
        user, _, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password or user or None


def _member(token: str, tokens: Iterable[str]) -> bool:
    found = False
    for candidate in tokens:  # compare with every token, each in constant time
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found
