"""Settings of the evaluator process: one pydantic-settings object, validated at start.

``Settings`` extends the engine's ``EngineSettings`` (scheduler, Alertmanager, log and event stores,
OpenSearch, retention) with the API's own (database, listen address, tokens, TLS, ...), so the process
reads and checks its whole configuration once; the engine is handed this same object.

Environment variables use the ``POLICYWATCH_`` prefix (``POLICYWATCH_DATABASE_URL``, ...); command-line
flags of ``policywatch-evaluator`` override them. Unsafe combinations are refused at start: listening
off loopback without tokens, a certificate without its key, tokens too short to be secret.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from evaluator.durations import Duration, PositiveDuration
from evaluator.engine.config import EngineSettings
from evaluator.engine.ingest import DEFAULT_INDEX_PATTERNS, IndexPatterns

MIB = 1024 * 1024
MIN_TOKEN_LENGTH = 16
ROLES = ("read", "write")


class Settings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="POLICYWATCH_", extra="ignore", frozen=True)

    database_url: str = Field(default="sqlite:///./policywatch.db", description="SQLAlchemy URL of the database")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0 picks a free one)")
    read_tokens: Annotated[tuple[str, ...], NoDecode] = Field(default=(), description="bearer tokens that may read")
    write_tokens: Annotated[tuple[str, ...], NoDecode] = Field(default=(), description="bearer tokens that may write")
    token_file: Path | None = Field(default=None, description="file of 'read TOKEN' / 'write TOKEN' lines")
    tls_cert_file: Path | None = Field(default=None, description="PEM certificate: serve HTTPS")
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file")
    max_body_bytes: int = Field(default=MIB, ge=1024, description="larger request bodies get 413")
    flow_logs_flush_interval: Duration = Field(
        default=timedelta(minutes=5), description="Felix flowLogsFlushInterval (lookback warning)"
    )
    dns_logs_flush_interval: Duration = Field(
        default=timedelta(minutes=5), description="Felix dnsLogsFlushInterval (lookback warning)"
    )
    audit_logs_flush_interval: Duration = Field(
        default=timedelta(seconds=30), description="audit log flush interval (lookback warning)"
    )
    migrate: bool = Field(default=True, description="run database migrations at start")
    metrics_auth: bool = Field(
        default=False, description="/metrics needs a read token like the API (its series name the GlobalAlerts)"
    )
    # The Alerts page's sign-in (api/web/): cookie sessions, and optionally an authenticating proxy's user header.
    session_lifetime: PositiveDuration = Field(
        default=timedelta(hours=12), description="how long an Alerts page sign-in lasts"
    )
    trusted_proxy_header: str | None = Field(default=None, description="e.g. X-Forwarded-User (oauth2-proxy)")
    trusted_proxy_addresses: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("127.0.0.1/32", "::1/128"), description="addresses (CIDR) whose trusted_proxy_header is believed"
    )
    trusted_proxy_role: Literal["read", "write"] = Field(default="read", description="role of proxy-named users")
    database_lock_timeout: float = Field(
        default=10.0, gt=0, le=600, description="seconds a request waits for a database lock before a 503"
    )
    database_pool_timeout: float = Field(
        default=10.0, gt=0, le=600, description="seconds a request waits for a free database connection before a 503"
    )
    ingest_max_bytes: int = Field(default=32 * MIB, ge=1024, description="bulk bodies (decompressed) over this: 413")
    ingest_indices: str = Field(default=DEFAULT_INDEX_PATTERNS, description="/_bulk index GLOB=DATASET patterns")
    ingest_concurrency: int = Field(default=2, ge=1, le=64, description="bulk requests stored at once (more wait)")
    ingest_wait: float = Field(default=10.0, gt=0, le=600, description="seconds a bulk request waits, then 429")
    ingest_processes: int = Field(
        default=0, ge=0, le=64, description="worker processes that parse and store bulk requests (0: this process)"
    )
    definitions: Literal["database", "kubernetes"] = Field(
        default="database", description="where GlobalAlerts live: the database, or the cluster's custom resources"
    )
    kubeconfig: Path | None = Field(default=None, description="with definitions=kubernetes (default: in-cluster)")

    @field_validator("read_tokens", "write_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            # Commas or any whitespace: a Kubernetes Secret often ends with a newline, or lists one per line.
            return tuple(t for t in re.split(r"[,\s]+", value) if t)
        return value

    @field_validator("trusted_proxy_addresses", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(t for t in re.split(r"[,\s]+", value) if t)
        if isinstance(value, tuple | list):
            for network in value:
                try:
                    ipaddress.ip_network(str(network), strict=False)
                except ValueError:
                    raise ValueError(f"trusted proxy address {network!r}: expected an address or CIDR") from None
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return listen_address(value)

    @field_validator("ingest_indices")
    @classmethod
    def _index_patterns(cls, value: str) -> str:
        IndexPatterns(value)
        return value

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        if self.token_file is not None:
            read, write = load_token_file(self.token_file)
            object.__setattr__(self, "read_tokens", tuple(self.read_tokens) + read)
            object.__setattr__(self, "write_tokens", tuple(self.write_tokens) + write)
        for token in (*self.read_tokens, *self.write_tokens):
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"a token of {len(token)} characters is too short to be secret; use at least "
                    f"{MIN_TOKEN_LENGTH} (e.g. `openssl rand -hex 24`)"
                )
        if not self.auth_enabled and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} (off loopback) without bearer tokens: set "
                "POLICYWATCH_WRITE_TOKENS / POLICYWATCH_READ_TOKENS or --token-file, or listen on 127.0.0.1"
            )
        if self.metrics_auth and not self.auth_enabled:
            raise ValueError("--metrics-auth needs tokens (--token-file or POLICYWATCH_READ_TOKENS) to check")
        if self.kubeconfig is not None and self.definitions != "kubernetes":
            raise ValueError("--kubeconfig is read only with --definitions=kubernetes")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both --tls-cert-file and --tls-key-file")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            check_tls_pair(self.tls_cert_file, self.tls_key_file)
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.read_tokens or self.write_tokens)

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of ``api.db.make_engine`` for the API's database."""
        return {"lock_timeout": self.database_lock_timeout, "pool_timeout": self.database_pool_timeout}

    def flush_intervals(self) -> dict[str, timedelta]:
        return {
            "flows": self.flow_logs_flush_interval,
            "dns": self.dns_logs_flush_interval,
            "audit": self.audit_logs_flush_interval,
        }


def listen_address(host: str) -> str:
    """``host`` as the server binds it: ``[::1]`` (URL form) is ``::1``."""
    address = host.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not address:
        raise ValueError("an empty address; use e.g. 127.0.0.1, ::1 or 0.0.0.0")
    return address


def check_resolvable(host: str) -> None:
    """A name to listen on must resolve (checked at start, before migrating: not in ``Settings``, which
    tests build for names this machine may not resolve)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError(
            f"cannot listen on {host!r}: not an IP address, and the name does not resolve ({exc}); "
            "use e.g. 127.0.0.1, ::1 or 0.0.0.0"
        ) from None


def check_tls_pair(cert: Path, key: Path) -> None:
    """Load the certificate and key as the server will, so a bad pair is one line at start, not a
    traceback after migrating and announcing HTTPS."""
    try:
        cert_text = cert.read_text(encoding="utf-8", errors="replace")
        key_text = key.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"TLS files {cert} / {key} cannot be read: {exc.strerror or exc}") from None
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise ValueError(f"--tls-cert-file {cert} is not a PEM certificate (no '-----BEGIN CERTIFICATE-----' line)")
    if "PRIVATE KEY-----" not in key_text:
        raise ValueError(f"--tls-key-file {key} is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line)")
    if "ENCRYPTED" in key_text:
        raise ValueError(f"--tls-key-file {key} is encrypted; give the unencrypted key (openssl pkey -in KEY -out NEW)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"TLS key {key} is not the private key of certificate {cert}") from None
        which = "key" if "KEY" in reason or "PRIVATE" in reason else "certificate or key"
        raise ValueError(
            f"TLS {which} cannot be loaded ({reason}): --tls-cert-file {cert} must be a PEM certificate and "
            f"--tls-key-file {key} its PEM private key (unencrypted)"
        ) from None
    except OSError as exc:
        raise ValueError(f"TLS files {cert} / {key} cannot be read: {exc.strerror or exc}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token_file(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Read 'ROLE TOKEN' lines (ROLE read or write; '#' starts a comment)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read token file {path}: {exc.strerror}") from exc
    read: list[str] = []
    write: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ROLES:
            raise ValueError(f"{path}:{number}: expected 'read TOKEN' or 'write TOKEN'")
        (read if parts[0] == "read" else write).append(parts[1])
    return tuple(read), tuple(write)
