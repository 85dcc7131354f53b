"""The evaluator's own Prometheus metrics endpoint and the HTTP request counter."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_COUNTERS: dict[int, Counter] = {}


def http_requests_counter(registry: CollectorRegistry = REGISTRY) -> Counter:
    """One counter per registry (apps created again in one process share it)."""
    counter = _COUNTERS.get(id(registry))
    if counter is None:
        counter = Counter(
            "policywatch_evaluator_http_requests",
            "HTTP requests served by the evaluator API, by method, route template and status code.",
            ["method", "route", "code"],
            registry=registry,
        )
        _COUNTERS[id(registry)] = counter
    return counter


def metrics_router(registry: CollectorRegistry = REGISTRY) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", summary="Prometheus metrics of the evaluator", response_class=Response)
    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
