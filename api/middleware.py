"""ASGI middleware of the evaluator: request metrics, body size limit, bearer-token authorisation.

Pure ASGI (no BaseHTTPMiddleware) so that streaming and lifespan pass through untouched.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http import status_body

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths anyone may read: health, metrics (Prometheus scrapes without a token) and the API description.
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


async def send_status(
    send: Send, code: int, reason: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(status_body(code, reason, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HttpMetricsMiddleware:
    """Counts responses by method, route template (never the raw path) and status code."""

    def __init__(self, app: ASGIApp, *, counter: Counter, routes: Any = None) -> None:
        self.app = app
        self.counter = counter
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.counter.labels(scope["method"], self._route(scope), str(code)).inc()

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        for candidate in self.routes or ():
            match, _ = candidate.matches({**scope, "method": "GET"})
            if match != Match.NONE and isinstance(getattr(candidate, "path", None), str):
                return str(candidate.path)
        return "unmatched"


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length up front, or while a chunked body streams."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await send_status(send, 400, "BadRequest", "invalid Content-Length header")
                    return
                if length > self.max_bytes:
                    await self._reject(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_status(
            send,
            413,
            "RequestEntityTooLarge",
            f"request body larger than {self.max_bytes} bytes; split the objects into several requests",
            headers=[(b"connection", b"close")],
        )


class TokenAuthMiddleware:
    """Bearer tokens with two roles: read (GET, HEAD, OPTIONS) and write (everything; implies read).

    With no tokens configured (the loopback-only default) every request passes.
    """

    def __init__(self, app: ASGIApp, *, read_tokens: Iterable[str], write_tokens: Iterable[str]) -> None:
        self.app = app
        self.read_tokens = tuple(t.encode() for t in read_tokens)
        self.write_tokens = tuple(t.encode() for t in write_tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.read_tokens or self.write_tokens) or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = self._token(scope)
        challenge = [(b"www-authenticate", b'Bearer realm="policywatch"')]
        if token is None:
            await send_status(
                send, 401, "Unauthorized", "missing bearer token (Authorization: Bearer TOKEN)", challenge
            )
            return
        can_write = _member(token, self.write_tokens)
        can_read = can_write or _member(token, self.read_tokens)
        if not can_read:
            await send_status(send, 401, "Unauthorized", "unknown bearer token", challenge)
            return
        if scope["method"] not in READ_METHODS and not can_write:
            await send_status(
                send, 403, "Forbidden", f"this token may only read; {scope['method']} needs a write token"
            )
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _token(scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and token.strip():
                    return bytes(token.strip())
        return None


def _member(token: bytes, tokens: tuple[bytes, ...]) -> bool:
    found = False
    for candidate in tokens:  # compare with all, in constant time each, so timing reveals nothing
        found |= hmac.compare_digest(token, candidate)
    return found
