"""Who is looking at the Alerts page: a bearer header (checked by ``api.security``), a signed cookie session,
or an authenticating proxy's user header from a trusted address; and the checks a form POST must pass.

With no tokens configured (loopback only) everyone may read and write, as on the API; form POSTs still
need the same-origin and CSRF checks, with a per-process key.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from fastapi.responses import Response

from api.security import Principal, token_name
from api.settings import Settings
from api.web.session import COOKIE, MAX_NAME, Session, SessionError, SessionKeys

COOKIE_PATH = "/ui"
_PROCESS_SECRET = secrets.token_hex(32)  # keys the CSRF tokens when there are no tokens to derive a key from


@dataclass(frozen=True, slots=True)
class Viewer:
    name: str
    can_write: bool
    csrf: str | None  # the form token; None for a bearer header (a browser cannot forge one cross-site)
    via: str  # "open", "bearer", "session" or "proxy"


@dataclass(frozen=True, slots=True)
class Resolution:
    viewer: Viewer | None
    problem: str | None = None  # why a cookie was refused (shown on the sign-in page)


@lru_cache(maxsize=8)
def _keys(read_tokens: tuple[str, ...], write_tokens: tuple[str, ...]) -> SessionKeys:
    if not read_tokens and not write_tokens:
        return SessionKeys((_PROCESS_SECRET,), ())
    return SessionKeys(read_tokens, write_tokens)


def session_keys(settings: Settings) -> SessionKeys:
    return _keys(tuple(settings.read_tokens), tuple(settings.write_tokens))


def lifetime_seconds(settings: Settings) -> int:
    return max(1, int(settings.duration("session_lifetime").total_seconds()))


def resolve(request: Request, settings: Settings) -> Resolution:
    keys = session_keys(settings)
    if not settings.auth_enabled:  # everyone may write; a trusted proxy's user header still names them
        return Resolution(Viewer(proxy_user(request, settings) or "anonymous", True, keys.csrf_token("open"), "open"))
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:  # api.security checked the bearer header
        return Resolution(Viewer(principal.name, principal.can_write, None, "bearer"))
    problem = None
    cookie = request.cookies.get(COOKIE)
    if cookie:
        try:
            viewer = _session_viewer(keys.decode(cookie), settings, keys)
        except SessionError as exc:
            problem = str(exc)
        else:
            if viewer is not None:
                return Resolution(viewer)
            problem = "the token of your session is no longer configured; sign in again"
    user = proxy_user(request, settings)
    if user is not None:
        csrf = keys.csrf_token(f"proxy\x00{user}")
        return Resolution(Viewer(user, settings.trusted_proxy_role == "write", csrf, "proxy"))
    return Resolution(None, problem)


def _session_viewer(session: Session, settings: Settings, keys: SessionKeys) -> Viewer | None:
    for tokens, can_write in ((settings.write_tokens, True), (settings.read_tokens, False)):
        for token in tokens:
            if secrets.compare_digest(keys.token_digest(token), session.token_digest):
                return Viewer(session.user, can_write, keys.csrf_token(f"session\x00{session.nonce}"), "session")
    return None


def proxy_user(request: Request, settings: Settings) -> str | None:
    """The proxy's user header, believed only from a configured address (oauth2-proxy's X-Forwarded-User)."""
    if not settings.trusted_proxy_header or request.client is None:
        return None
    user = (request.headers.get(settings.trusted_proxy_header) or "").strip()
    if not user or len(user) > MAX_NAME * 4:
        return None
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return None
    networks = (ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxy_addresses)
    return user if any(address in network for network in networks) else None


def same_origin(request: Request) -> bool:
    """A form POST must come from this server's own pages: its Origin (or Referer) names this host."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    # host[:port] only: behind a proxy that ends TLS the browser's https is http here
    return urlsplit(source).netloc == request.headers.get("host")


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the page's forms), first value of each field."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body, keep_blank_values=True).items()}


def is_https(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or settings.tls_cert_file is not None


def set_session_cookie(response: Response, request: Request, settings: Settings, *, token: str, user: str) -> None:
    keys = session_keys(settings)
    lifetime = lifetime_seconds(settings)
    value = keys.encode(keys.new_session(user=user or token_name(token), token=token, lifetime_seconds=lifetime))
    response.set_cookie(
        COOKIE,
        value,
        max_age=lifetime,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request, settings),
    )


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request, settings)
    )
