"""ASGI middleware of the evaluator: request metrics, the request body limit and the request guard.

Pure ASGI (no BaseHTTPMiddleware) so that streaming and lifespan pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl

from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http import acceptable, render, status_body


class HttpMetricsMiddleware:
    """Counts responses by method, route template (never the raw path) and status code.

    The template is the matched route's path behind one of the known mount prefixes (the Calico API
    group path); requests that match no route count as ``unmatched``.
    """

    def __init__(self, app: ASGIApp, *, counter: Counter, prefixes: Iterable[str] = ("",)) -> None:
        self.app = app
        self.counter = counter
        self.prefixes = frozenset(prefixes)

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
            self.counter.labels(scope["method"], self.route_label(scope), str(code)).inc()

    def route_label(self, scope: Scope) -> str:
        template = getattr(scope.get("route"), "path", None)
        if not isinstance(template, str):
            return "unmatched"
        parts = str(scope["path"]).split("/")
        prefix = "/".join(parts[: max(len(parts) - template.count("/"), 0)])
        return prefix + template if prefix in self.prefixes else template


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's own body parsing passes it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body larger than {limit} bytes; split the objects into several requests",
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``, by Content-Length or while a chunked body streams in.

    The check runs when the application reads the body, so the error goes through the app's handlers
    (JSON or YAML Status, counted under its route). ``limit_for(path)`` may give some paths (bulk
    ingest) another limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, limit_for: Callable[[str], int | None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if self.limit_for is not None:
            limit = self.limit_for(str(scope["path"])) or limit
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


class RequestGuardMiddleware:
    """What no route should have to check, answered before any route runs or after any fails:

    - a NUL character in the path or query (``%00``): 400 naming the parameter (PostgreSQL cannot even
      compare such a string, so it would fail deep in a query);
    - every 5xx response says ``Connection: close``: the server drops a connection after an unhandled error,
      and a client told so opens a new one instead of failing its next request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _nul_in(scope)
        if where is not None:
            await _bad_request(scope, receive, send, f"{where} contains a NUL character (%00); remove it")
            return

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) >= 500:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)


def _nul_in(scope: Scope) -> str | None:
    if "\x00" in str(scope.get("path", "")):
        return "the path"
    query = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in value or "\x00" in name:
            return f"query parameter {name.replace(chr(0), '')!r}"
    return None


async def _bad_request(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    response = render(Request(scope), status_body(400, "BadRequest", message), status_code=400)
    await response(scope, receive, send)


# Paths whose answers are JSON or YAML objects (the web page, metrics and Elasticsearch endpoints have their own).
OBJECT_PATHS = ("/globalalerts", "/globalalerttemplates", "/apis", "/api", "/events", "/version")


class MethodsMiddleware:
    """HTTP method semantics routes do not give by themselves:

    - ``HEAD`` works wherever ``GET`` does: the GET runs, its status and headers (``Content-Length`` included) are
      sent, its body is not;
    - a 405's ``Allow`` lists every method of every route at that path, not only those of the first route that
      matched the path (``/globalalerts`` has a GET and a POST route);
    - an ``Accept`` that admits neither JSON nor YAML on the object API gets 406, not a body the client refused.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _is_object_path(scope["path"]):
            accept = Headers(scope=scope).get("accept", "")
            if not acceptable(accept):
                message = f"cannot answer in any type Accept names ({accept[:200]}); this API writes application/json"
                body = status_body(406, "NotAcceptable", message + " or application/yaml")
                await JSONResponse(body, status_code=406)(scope, receive, send)
                return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        finished = False

        async def method_send(message: Message) -> None:
            nonlocal finished
            if finished:
                return  # a HEAD's body, or a stream after it: never sent
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = _allowed_methods(scope)
                # Only the router's own 405 (no route for this method); a route that answers 405 itself (the REST
                # API in --definitions=kubernetes mode) says what it allows.
                if allowed and scope["method"] not in allowed:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", ", ".join(allowed).encode())]}
            elif head and message["type"] == "http.response.body":
                finished = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, method_send)


def _is_object_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in OBJECT_PATHS)


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def _allowed_methods(scope: Scope) -> list[str]:
    """The methods some route serves at this path: each asked of the router as a request would be."""
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
    methods = [m for m in _METHODS if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in routes)]
    if "GET" in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return methods
