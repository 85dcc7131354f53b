"""ASGI middleware of the evaluator: request metrics and the request body limit.

Pure ASGI (no BaseHTTPMiddleware) so that streaming and lifespan pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
