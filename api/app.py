"""The evaluator's FastAPI application: routers in one place, long-running services in the lifespan.

``create_app(settings)`` builds everything from the settings with production defaults; tests pass an
engine, a fresh Prometheus registry, or their own services.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy import Engine

from api.db import make_engine
from api.deps import Services
from api.errors import install_error_handlers
from api.kube import discovery, openapi
from api.metrics import http_requests_counter, metrics_router
from api.middleware import BodyLimitMiddleware, HttpMetricsMiddleware
from api.routes import alerts, datasets, dryrun, events, web
from api.schemas import document_bad_request
from api.security import authorize
from api.settings import Settings
from evaluator.alerts import DEFAULT_CATALOG, QueryCatalog

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
    discovery.router,
    openapi.router,
]


class Service(Protocol):
    """A long-running part of the process (the scheduler), started and stopped with the app."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ServiceFactory = Callable[[Services], Sequence[Service]]


def default_services(services: Services) -> list[Service]:
    """The services ``policywatch-evaluator`` runs beside the API (one line each)."""
    return [*services.runtime.services()]


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
    registry: CollectorRegistry = REGISTRY,
    catalog: QueryCatalog = DEFAULT_CATALOG,
    service_factory: ServiceFactory = default_services,
) -> FastAPI:
    settings = settings or Settings()
    owns_engine = engine is None
    engine = engine or make_engine(settings.database_url)
    shared = Services(settings=settings, engine=engine, catalog=catalog)
    background = list(service_factory(shared))

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
    for router in RESOURCE_ROUTERS:
        app.include_router(router)
        app.include_router(router, prefix=API_PREFIX)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(metrics_router(registry))

    @app.get("/healthz", tags=["health"], summary="Liveness: the process serves requests")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_error_handlers(app)
    _document_errors(app)
    # Added innermost first: the body limit, then metrics outermost (it sees every response).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetricsMiddleware, counter=http_requests_counter(registry), prefixes=("", API_PREFIX))
    return app
