"""The evaluator's own Prometheus metrics endpoint and the HTTP request counter."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, Counter
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest


def app_registry() -> CollectorRegistry:
    """The registry of one app: its own metrics plus the process, platform and GC collectors that the
    global ``REGISTRY`` carries (so ``/metrics`` shows them), without sharing anything between apps."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def http_requests_counter(registry: CollectorRegistry) -> Counter:
    """The request counter of one app, in its registry (built once by ``create_app``)."""
    return Counter(
        "policywatch_evaluator_http_requests",
        "HTTP requests served by the evaluator API, by method, route template and status code.",
        ["method", "route", "code"],
        registry=registry,
    )


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", summary="Prometheus metrics of the evaluator", response_class=Response)
    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
