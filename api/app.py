"""The evaluator's FastAPI application: routers in one place, long-running services in the lifespan.

``create_app(settings)`` builds everything from the settings with production defaults; tests pass an
engine, a fresh Prometheus registry, or their own services.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from api import health
from api.db import make_engine
from api.deps import Services
from api.errors import install_error_handlers
from api.faults import install_fault_handlers
from api.ingest import is_ingest_path
from api.ingest.pool import IngestPool
from api.kube import discovery, openapi
from api.kube_controller.controller import KubeDefinitions
from api.metrics import app_registry, http_requests_counter, metrics_router
from api.middleware import BodyLimitMiddleware, HttpMetricsMiddleware, MethodsMiddleware, RequestGuardMiddleware
from api.routes import alerts, datasets, dryrun, esbulk, events, web
from api.schemas import document_bad_request
from api.security import authorize
from api.settings import Settings
from api.store import SqlAlertRepository
from evaluator.alerts import DEFAULT_CATALOG, QueryCatalog
from evaluator.engine.runtime import EngineRuntime, Service
from evaluator.ports import AlertRepository

API_PREFIX = "/apis/projectcalico.org/v3"

# Resource routers: served at the root and under API_PREFIX (the Calico API group path).
RESOURCE_ROUTERS: list[APIRouter] = [
    alerts.global_alerts,
    alerts.global_alert_templates,
]
# Other routers (events, data sets, dry run, web page): one line each, served at the root.
ROUTERS: list[APIRouter] = [
    events.router,
    datasets.router,
    dryrun.router,
    web.router,
    esbulk.router,
    discovery.router,
    openapi.router,
]


ServiceFactory = Callable[[Services], Sequence[Service]]


def default_services(services: Services) -> list[Service]:
    """The services ``policywatch-evaluator`` runs beside the API (one line each)."""
    kube: list[Service] = [services.kube] if services.kube else []  # lists the cluster's alerts before the scheduler
    return [*kube, *services.runtime.services()]


def _document_errors(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_bad_request(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    registry: CollectorRegistry | None = None,
    catalog: QueryCatalog = DEFAULT_CATALOG,
    service_factory: ServiceFactory = default_services,
) -> FastAPI:
    settings = settings or Settings()
    owns_engine = engine is None
    engine = engine or make_engine(settings.database_url, **settings.engine_options())
    registry = registry if registry is not None else app_registry()
    kube = None
    if settings.definitions == "kubernetes":  # the cluster's custom resources are the alerts the engine runs
        kube = KubeDefinitions.connect(settings.kubeconfig, catalog=catalog, flush_intervals=settings.flush_intervals())
    sql_repository: SqlAlertRepository | None = None  # a run's status then joins the run's transaction
    repository: AlertRepository
    if kube:
        repository = kube.repository
    else:
        repository = sql_repository = SqlAlertRepository(engine)
    runtime = EngineRuntime(engine, repository, settings=settings, registry=registry, status_in_run=sql_repository)
    shared = Services(settings=settings, engine=engine, runtime=runtime, catalog=catalog, kube=kube)
    background = list(service_factory(shared))
    ingest_pool = IngestPool.for_runtime(
        settings.ingest_processes, runtime.sql_logs, lock_timeout=settings.database_lock_timeout
    )
    if ingest_pool is not None:
        background.append(ingest_pool)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        started: list[Service] = []
        try:
            for service in background:
                await service.start()
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                await service.stop()
            if owns_engine:
                engine.dispose()

    app = FastAPI(
        title="policywatch evaluator",
        summary="GlobalAlert and GlobalAlertTemplate API (projectcalico.org/v3)",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(authorize)],
    )
    app.state.services = shared
    app.state.ingest_pool = ingest_pool
    for router in RESOURCE_ROUTERS:
        app.include_router(router)
        app.include_router(router, prefix=API_PREFIX)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(metrics_router(registry))
    app.include_router(health.router)

    install_error_handlers(app)
    install_fault_handlers(app)
    _document_errors(app)
    # Added innermost first: the body limit, then metrics outermost (it sees every response).
    ingest_max = settings.ingest_max_bytes
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        limit_for=lambda path: ingest_max if is_ingest_path(path) else None,
    )
    app.add_middleware(RequestGuardMiddleware)
    app.add_middleware(MethodsMiddleware)
    app.add_middleware(HttpMetricsMiddleware, counter=http_requests_counter(registry), prefixes=("", API_PREFIX))
    return app
