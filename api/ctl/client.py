"""HTTP client of ``policywatchctl``: server URL and token from flags or environment, errors as text.

Other sub-commands reuse ``add_connection_args`` and ``ApiClient`` so every command connects the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT_S = 30.0


class ClientError(Exception):
    """A failure to show the user: the server's reasons, or why the server could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def add_connection_args(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """The connection flags, on the main parser (``top``: ``policywatchctl --server X get ...``) and on each
    sub-command (``policywatchctl get ... --server X``); a sub-command's flag wins, and its absence leaves the
    main parser's value (``SUPPRESS``: argparse copies a sub-parser's defaults over the main parser's)."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--server",
        default=default,
        help=f"evaluator URL (env POLICYWATCH_SERVER; default {DEFAULT_SERVER})",
    )
    parser.add_argument("--token", default=default, help="bearer token (env POLICYWATCH_TOKEN)")
    parser.add_argument("--ca-file", default=default, help="CA bundle that signed the server's TLS certificate")


@dataclass
class Response:
    status: int
    body: Any
    warnings: list[str]


class ApiClient:
    def __init__(self, server: str, token: str | None = None, *, ca_file: str | None = None) -> None:
        self.server = server.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = ca_context(ca_file) if ca_file else True
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=TIMEOUT_S, verify=verify)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ApiClient:
        server = getattr(args, "server", None) or os.environ.get("POLICYWATCH_SERVER") or DEFAULT_SERVER
        token = getattr(args, "token", None) or os.environ.get("POLICYWATCH_TOKEN") or None
        try:
            return cls(server, token, ca_file=getattr(args, "ca_file", None))
        except ClientError as exc:  # before any request: one line and exit status 2, as argparse does
            raise SystemExit(f"policywatchctl: {exc}") from None

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Response:
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the evaluator at {self.server}: {exc}") from exc
        warnings = [_warning_text(v) for v in response.headers.get_list("warning")]
        try:
            data = response.json() if response.content else None
        except json.JSONDecodeError:
            data = response.text
        if response.status_code >= 400:
            raise ClientError(error_text(response.status_code, data), status=response.status_code, body=data)
        return Response(response.status_code, data, [w for w in warnings if w])


def ca_context(ca_file: str) -> ssl.SSLContext:
    """A TLS context trusting ``ca_file``; a missing or unreadable bundle is a ``ClientError`` saying which."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise ClientError(f"--ca-file {ca_file}: no such file") from None
    except ssl.SSLError as exc:
        raise ClientError(f"--ca-file {ca_file}: not a PEM CA bundle ({exc.reason or exc})") from None
    except OSError as exc:
        raise ClientError(f"--ca-file {ca_file}: cannot read it ({exc.strerror or exc})") from None


def error_text(status: int, data: Any) -> str:
    """The server's message and, for invalid objects, each field with its value and reason."""
    if not isinstance(data, dict):
        return f"HTTP {status}: {str(data)[:500]}"
    lines = [f"{data.get('message') or data.get('reason') or 'error'} (HTTP {status})"]
    if data.get("errors"):
        lines = [f"{data.get('reason', 'Invalid')} (HTTP {status}):"]
        for error in data["errors"]:
            lines.append(f"  {error.get('path') or '(object)'}: {error.get('reason')} (value: {error.get('value')!r})")
    return "\n".join(lines)


def _warning_text(header: str) -> str:
    """Split ``299 - "a", 299 - "b"`` into readable text."""
    parts = []
    for chunk in header.split('299 - "'):
        chunk = chunk.strip().rstrip(",").strip()
        if chunk.endswith('"'):
            chunk = chunk[:-1]
        if chunk:
            parts.append(chunk.replace('\\"', '"').replace("\\\\", "\\"))
    return "; ".join(parts)
