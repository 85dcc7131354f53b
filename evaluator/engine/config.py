"""Settings of the alert engine in the evaluator process (environment ``POLICYWATCH_*``), validated at start."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from evaluator.durations import DurationError, parse_go_duration


def _duration(value: str) -> timedelta:
    try:
        parsed = parse_go_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from exc
    if parsed <= timedelta(0):
        raise ValueError(f"{value!r} must be a positive duration such as 30s, 10m or 168h")
    return parsed


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLICYWATCH_", extra="ignore", frozen=True)

    scheduler_enabled: bool = Field(default=True, description="run the alert scheduler in this process")
    scheduler_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="alert runs in parallel (default 4; 1 on SQLite, which has one writer and where parallel "
        "runs only compete with the API for it and for the GIL)",
    )

    def workers_for(self, dialect: str) -> int:
        if self.scheduler_workers is not None:
            return self.scheduler_workers
        return 1 if dialect == "sqlite" else 4

    scheduler_lease_ttl: str = Field(default="60s", description="a dead process's alerts are taken over after this")
    scheduler_max_catchup: int = Field(default=24, ge=1, le=10_000, description="missed periods run after downtime")
    scheduler_backoff_initial: str = Field(default="5s", description="first retry delay after a failed run")
    scheduler_backoff_max: str = Field(default="5m", description="longest retry delay")
    bucket_cap: int = Field(default=10_000, ge=1, le=1_000_000, description="aggregation buckets (or hits) per run")
    alertmanager_url: str | None = Field(default=None, description="Alertmanager base URL, e.g. http://127.0.0.1:9093")
    log_store: Literal["sql", "opensearch"] = Field(default="sql", description="where flow/dns/audit logs are read")
    log_database_url: str | None = Field(
        default=None, description="SQL log store URL (default: the evaluator database)"
    )
    event_store: Literal["sql", "opensearch"] = Field(default="sql", description="where GET /events reads")
    opensearch_events_index: str = "policywatch_events"
    opensearch_url: str | None = Field(default=None, description="OpenSearch URL when log_store is opensearch")
    opensearch_flows_index: str = "tigera_secure_ee_flows.cluster.*"
    opensearch_dns_index: str = "tigera_secure_ee_dns.cluster.*"
    opensearch_audit_index: str = "tigera_secure_ee_audit_*.cluster.*"
    opensearch_username: str | None = Field(default=None, description="OpenSearch basic-auth user name")
    opensearch_password: SecretStr | None = Field(default=None, description="OpenSearch basic-auth password")
    opensearch_ca_file: Path | None = Field(default=None, description="PEM CA bundle of OpenSearch's certificate")
    opensearch_verify_certs: bool = Field(default=True, description="check OpenSearch's TLS certificate")
    opensearch_timeout: float = Field(default=30.0, gt=0, le=600)
    retention_logs: str = Field(default="168h", description="embedded log records older than this are deleted")
    retention_events: str = Field(default="720h", description="events older than this are deleted")
    retention_runs: str = Field(default="24h", description="alert_runs bookkeeping rows older than this are deleted")
    retention_interval: str = Field(default="10m", description="how often retention runs")

    @field_validator(
        "scheduler_lease_ttl",
        "scheduler_backoff_initial",
        "scheduler_backoff_max",
        "retention_logs",
        "retention_events",
        "retention_runs",
        "retention_interval",
    )
    @classmethod
    def _check_duration(cls, value: str) -> str:
        _duration(value)
        return value

    @model_validator(mode="after")
    def _opensearch_needs_url(self) -> EngineSettings:
        for name, value in (("log_store", self.log_store), ("event_store", self.event_store)):
            if value == "opensearch" and not self.opensearch_url:
                raise ValueError(
                    f"POLICYWATCH_{name.upper()}=opensearch (--{name.replace('_', '-')}) needs "
                    "POLICYWATCH_OPENSEARCH_URL (--opensearch-url), e.g. https://opensearch:9200"
                )
        if self.alertmanager_url is not None and not self.alertmanager_url.startswith(("http://", "https://")):
            raise ValueError(f"alertmanager_url {self.alertmanager_url!r} must start with http:// or https://")
        if (self.opensearch_username is None) != (self.opensearch_password is None):
            raise ValueError(
                "OpenSearch basic auth needs both POLICYWATCH_OPENSEARCH_USERNAME and POLICYWATCH_OPENSEARCH_PASSWORD"
            )
        if self.opensearch_ca_file is not None and not self.opensearch_ca_file.is_file():
            raise ValueError(f"POLICYWATCH_OPENSEARCH_CA_FILE {self.opensearch_ca_file} does not exist")
        return self

    def opensearch_client_options(self) -> dict[str, Any]:
        """Keyword arguments of ``opensearchpy.OpenSearch`` for ``opensearch_url``: auth, TLS checks, timeout."""
        options: dict[str, Any] = {
            "hosts": [self.opensearch_url],
            "timeout": self.opensearch_timeout,
            "verify_certs": self.opensearch_verify_certs,
        }
        if self.opensearch_username is not None and self.opensearch_password is not None:
            options["http_auth"] = (self.opensearch_username, self.opensearch_password.get_secret_value())
        if self.opensearch_ca_file is not None:
            options["ca_certs"] = str(self.opensearch_ca_file)
        return options

    def duration(self, name: str) -> timedelta:
        value = getattr(self, name)
        assert isinstance(value, str)
        return _duration(value)
