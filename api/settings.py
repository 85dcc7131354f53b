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
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from evaluator.durations import DurationError, parse_go_duration
from evaluator.engine.config import EngineSettings

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
    flow_logs_flush_interval: str = Field(default="5m", description="Felix flowLogsFlushInterval (lookback warning)")
    dns_logs_flush_interval: str = Field(default="5m", description="Felix dnsLogsFlushInterval (lookback warning)")
    audit_logs_flush_interval: str = Field(default="30s", description="audit log flush interval (lookback warning)")
    migrate: bool = Field(default=True, description="run database migrations at start")
    # The Alerts page's sign-in (api/web/): cookie sessions, and optionally an authenticating proxy's user header.
    session_lifetime: str = Field(default="12h", description="how long an Alerts page sign-in lasts")
    trusted_proxy_header: str | None = Field(default=None, description="e.g. X-Forwarded-User (oauth2-proxy)")
    trusted_proxy_addresses: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("127.0.0.1/32", "::1/128"), description="addresses (CIDR) whose trusted_proxy_header is believed"
    )
    trusted_proxy_role: Literal["read", "write"] = Field(default="read", description="role of proxy-named users")

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

    @field_validator("session_lifetime")
    @classmethod
    def _lifetime(cls, value: str) -> str:
        return cls._check_duration(value)  # the engine's rule for its durations: positive, Go syntax

    @field_validator("flow_logs_flush_interval", "dns_logs_flush_interval", "audit_logs_flush_interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parsed = parse_go_duration(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from exc
        if parsed < timedelta(0):
            raise ValueError(f"flush interval {value!r} must not be negative")
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
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both --tls-cert-file and --tls-key-file")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.read_tokens or self.write_tokens)

    def flush_intervals(self) -> dict[str, timedelta]:
        return {
            "flows": parse_go_duration(self.flow_logs_flush_interval),
            "dns": parse_go_duration(self.dns_logs_flush_interval),
            "audit": parse_go_duration(self.audit_logs_flush_interval),
        }


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
