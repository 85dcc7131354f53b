"""The engine's parts in one evaluator process, built once from ``EngineSettings`` with production defaults.

The owner (``api.app.create_app``) builds the one ``EngineRuntime`` of its app and hands it to whatever
needs it (routes through a dependency, the lifespan through ``services()``): nothing finds it through a
global, so two apps in one process (tests) never share or mix their parts.
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from evaluator.engine.config import EngineSettings
from evaluator.engine.logstore import LogStore
from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.notify import AlertmanagerNotifier
from evaluator.engine.opensearch import OpenSearchLogStore
from evaluator.engine.opensearch_events import OpenSearchEventStore
from evaluator.engine.retention import Retention
from evaluator.engine.scheduler import Scheduler, SchedulerConfig, utcnow
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.events import EventStore, SqlEventStore
from evaluator.ports import AlertRepository, StatusInTransaction


class Service(Protocol):
    """A long-running part of the process (the scheduler), started and stopped with the app."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EngineRuntime:
    def __init__(
        self,
        engine: sa.Engine,
        repository: AlertRepository,
        *,
        settings: EngineSettings | None = None,
        registry: CollectorRegistry | None = None,
        status_in_run: StatusInTransaction | None = None,
    ) -> None:
        """``status_in_run``: the repository's status storage when it is ``engine``'s database, so each run
        writes its status in its own transaction (see ``Scheduler``)."""
        self.settings = settings = settings or EngineSettings()
        self.metrics = EngineMetrics(registry if registry is not None else CollectorRegistry())
        self.engine = engine
        self.sql_events = SqlEventStore(engine)
        self.events: EventStore = self.sql_events
        event_sink: EventStore | None = None
        if settings.event_store == "opensearch":
            event_sink = self.events = OpenSearchEventStore(
                opensearch_client(settings),
                index=settings.opensearch_events_index,
                timeout=settings.opensearch_timeout,
            )
        self.sql_logs: SqlLogStore | None = None
        self.log_store: LogStore
        if settings.log_store == "opensearch":
            self.log_store = OpenSearchLogStore(
                opensearch_client(settings),
                indices={
                    "flows": settings.opensearch_flows_index,
                    "dns": settings.opensearch_dns_index,
                    "audit": settings.opensearch_audit_index,
                },
                timeout=settings.opensearch_timeout,
            )
        else:
            log_engine = engine if not settings.log_database_url else sa.create_engine(settings.log_database_url)
            self.sql_logs = SqlLogStore(log_engine)
            self.log_store = self.sql_logs
        notifier = AlertmanagerNotifier(settings.alertmanager_url) if settings.alertmanager_url else None
        self.scheduler = Scheduler(
            engine=engine,
            repository=repository,
            log_store=self.log_store,
            notifier=notifier,
            event_sink=event_sink,
            config=SchedulerConfig(
                workers=settings.workers_for(engine.dialect.name),
                lease_ttl=settings.scheduler_lease_ttl,
                max_catchup=settings.scheduler_max_catchup,
                backoff_initial=settings.scheduler_backoff_initial,
                backoff_max=settings.scheduler_backoff_max,
                bucket_cap=settings.bucket_cap,
            ),
            metrics=self.metrics,
            status_in_run=status_in_run,
        )
        self.retention = Retention(
            engine=engine,
            log_store=self.sql_logs,
            events=self.sql_events,
            keep_logs=settings.retention_logs,
            keep_events=settings.retention_events,
            interval=settings.retention_interval,
            keep_runs=settings.retention_runs,
            clock=utcnow,
        )

    def services(self) -> list[Service]:
        """What runs beside the API: the scheduler (unless disabled) and retention."""
        out: list[Service] = [self.retention]
        if self.settings.scheduler_enabled:
            out.insert(0, self.scheduler)
        return out


def opensearch_client(settings: EngineSettings) -> Any:
    from opensearchpy import OpenSearch

    return OpenSearch(**settings.opensearch_client_options())
