"""A small client of the Kubernetes API for cluster-scoped custom resources: list, watch, get, status writes.

Plain ``httpx`` (already the project's HTTP client) rather than the official ``kubernetes`` package: that one
installs some 130 MB (generated models for every API group, aiohttp, websocket-client) for the five calls made
here. What it would give beyond them is configuration loading, done here for the cases a controller meets:

- in a Pod: the ServiceAccount token and CA under ``/var/run/secrets/kubernetes.io/serviceaccount`` and
  ``KUBERNETES_SERVICE_HOST``/``_PORT``; the token file is re-read, since bound tokens rotate;
- a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``): the current context's cluster
  (``server``, ``certificate-authority[-data]``, ``insecure-skip-tls-verify``, ``tls-server-name``) and user
  (``token``, ``tokenFile``, ``client-certificate[-data]`` + ``client-key[-data]``). ``exec`` and
  ``auth-provider`` users are refused with a message saying what works instead.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
GROUP = "projectcalico.org"
VERSION = "v3"


class ConfigError(Exception):
    """No usable cluster configuration; the message says what was looked at and what would work."""


class KubeApiError(Exception):
    """A non-2xx answer of the API server, with the ``Status`` it sent (code, reason, message)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code} {reason}: {message}")


@dataclass(frozen=True)
class ClusterConfig:
    """Where the API server is and how to authenticate to it."""

    server: str
    ca_file: Path | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    token_file: Path | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    source: str = ""  # for messages: "in-cluster" or the kubeconfig path and context

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None,
            cadata=self.ca_data.decode("ascii") if self.ca_data else None,
        )
        if self.client_cert_data and self.client_key_data:
            # ssl loads key pairs only from files: a private temporary directory, removed at once.
            with tempfile.TemporaryDirectory(prefix="policywatch-kube-") as directory:
                cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
                cert.write_bytes(self.client_cert_data)
                key.touch(mode=0o600)
                key.write_bytes(self.client_key_data)
                context.load_cert_chain(cert, key)
        return context


def in_cluster_config(directory: Path = SERVICE_ACCOUNT_DIR, env: Mapping[str, str] = os.environ) -> ClusterConfig:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not in a Pod: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set")
    token = directory / "token"
    if not token.is_file():
        raise ConfigError(
            f"in a Pod, but {token} is missing: mount the ServiceAccount token (automountServiceAccountToken: true)"
        )
    host = f"[{host}]" if ":" in host else host
    ca = directory / "ca.crt"
    return ClusterConfig(
        server=f"https://{host}:{port}",
        ca_file=ca if ca.is_file() else None,
        token_file=token,
        source="in-cluster ServiceAccount",
    )


def load_kubeconfig(path: Path, context: str | None = None) -> ClusterConfig:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {path} is not YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path}: expected a Config mapping")
    name = context or doc.get("current-context")
    if not name:
        raise ConfigError(f"kubeconfig {path} has no current-context (kubectl config use-context NAME)")
    ctx = _named(doc, "contexts", name, path).get("context") or {}
    cluster = _named(doc, "clusters", str(ctx.get("cluster")), path).get("cluster") or {}
    user = (_named(doc, "users", str(ctx["user"]), path).get("user") or {}) if ctx.get("user") else {}
    where = f"kubeconfig {path}, context {name}"
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(
            f"{where}: the user authenticates with an exec/auth-provider plugin, which policywatch-evaluator does "
            "not run; use a kubeconfig with a token (e.g. from `kubectl create token SA`) or a client certificate"
        )
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"{where}: the cluster has no server")
    base = path.parent

    def file(value: Any) -> Path | None:
        return None if not value else (base / str(value)).resolve()

    def data(value: Any) -> bytes | None:
        return None if not value else base64.b64decode(str(value))

    cert = data(user.get("client-certificate-data")) or _read(file(user.get("client-certificate")))
    key = data(user.get("client-key-data")) or _read(file(user.get("client-key")))
    if (cert is None) != (key is None):
        raise ConfigError(f"{where}: a client certificate needs both client-certificate and client-key")
    return ClusterConfig(
        server=str(server).rstrip("/"),
        ca_file=file(cluster.get("certificate-authority")),
        ca_data=data(cluster.get("certificate-authority-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
        token=user.get("token"),
        token_file=file(user.get("tokenFile")),
        client_cert_data=cert,
        client_key_data=key,
        source=where,
    )


def resolve_config(kubeconfig: Path | None = None, env: Mapping[str, str] = os.environ) -> ClusterConfig:
    """``--kubeconfig`` if given; else the Pod's ServiceAccount; else ``$KUBECONFIG`` or ``~/.kube/config``."""
    if kubeconfig is not None:
        return load_kubeconfig(kubeconfig)
    if env.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster_config(env=env)
    candidates = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates.append(Path.home() / ".kube" / "config")
    for candidate in candidates:
        if candidate.is_file():
            return load_kubeconfig(candidate)
    raise ConfigError(
        "no cluster configuration: not in a Pod (KUBERNETES_SERVICE_HOST unset), no --kubeconfig, and none of "
        + ", ".join(str(c) for c in candidates)
        + " exists"
    )


def _named(doc: Mapping[str, Any], section: str, name: str, path: Path) -> Mapping[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise ConfigError(f"kubeconfig {path}: no entry {name!r} in {section}")


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


class _BearerToken(httpx.Auth):
    """A fixed token, or a token file re-read every minute (kubelet rotates projected tokens)."""

    def __init__(self, token: str | None, token_file: Path | None) -> None:
        self._token = token
        self._file = token_file
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> str | None:
        if self._file is None:
            return self._token
        with self._lock:
            if time.monotonic() - self._read_at >= TOKEN_REREAD_SECONDS:
                self._token = self._file.read_text(encoding="utf-8").strip()
                self._read_at = time.monotonic()
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.current()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


@dataclass
class KubeClient:
    """The calls the controller makes on cluster-scoped resources of ``projectcalico.org/v3``."""

    config: ClusterConfig
    timeout: float = 30.0
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        extensions = {"sni_hostname": self.config.tls_server_name} if self.config.tls_server_name else None
        self._extensions = extensions or {}
        self._http = httpx.Client(
            base_url=self.config.server,
            verify=self.config.ssl_context(),
            auth=_BearerToken(self.config.token, self.config.token_file),
            timeout=self.timeout,
            headers={"Accept": "application/json", "User-Agent": "policywatch-evaluator"},
        )

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def path(plural: str, name: str | None = None, subresource: str | None = None) -> str:
        out = f"/apis/{GROUP}/{VERSION}/{plural}"
        if name is not None:
            out += f"/{name}"
        if subresource is not None:
            out += f"/{subresource}"
        return out

    def list(self, plural: str) -> tuple[list[dict[str, Any]], str]:
        """Every object and the list's resourceVersion (to watch from)."""
        body = self._request("GET", self.path(plural))
        return list(body.get("items") or []), str(body.get("metadata", {}).get("resourceVersion", ""))

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self._request("GET", self.path(plural, name))

    def replace_status(self, plural: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the object to its ``/status``: the server keeps the spec and checks metadata.resourceVersion."""
        name = str(obj["metadata"]["name"])
        return self._request("PUT", self.path(plural, name, "status"), json=obj)

    @contextmanager
    def watch(self, plural: str, resource_version: str, timeout_seconds: int) -> Iterator[Iterator[WatchEvent]]:
        """Events after ``resource_version`` until the server ends the watch (after ``timeout_seconds``).
        An expired version raises ``KubeApiError`` with code 410 (list again). Closing the returned context
        (or ``close()`` of this client from another thread) ends it."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = httpx.Timeout(self.timeout, read=timeout_seconds + self.timeout)
        with self._http.stream(
            "GET", self.path(plural), params=params, timeout=timeout, extensions=self._extensions
        ) as response:
            if response.status_code >= 300:
                response.read()
                raise _api_error(response)
            yield _events(response)

    def _request(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        response = self._http.request(method, path, json=json, extensions=self._extensions)
        if response.status_code >= 300:
            raise _api_error(response)
        body: dict[str, Any] = response.json()
        return body


def _events(response: httpx.Response) -> Iterator[WatchEvent]:
    for line in response.iter_lines():
        if not line.strip():
            continue
        event = json.loads(line)
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            raise KubeApiError(int(obj.get("code", 500)), str(obj.get("reason", "")), str(obj.get("message", "")))
        yield WatchEvent(str(event.get("type")), obj)


def _api_error(response: httpx.Response) -> KubeApiError:
    try:
        status = response.json()
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    message = str(status.get("message") or response.text[:300] or response.reason_phrase)
    return KubeApiError(response.status_code, str(status.get("reason") or response.reason_phrase), message)
