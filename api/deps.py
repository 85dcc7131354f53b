"""Dependencies of the routes: the per-app services, and the decoded request body."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from api.http import decode_body
from api.kube_controller.controller import KubeDefinitions
from api.resources import KINDS
from api.settings import Settings
from api.store import ObjectStore, ObjectStorePort, SqlAlertRepository
from evaluator.alerts import DEFAULT_CATALOG, FieldError, QueryCatalog, SpecInvalid
from evaluator.engine.runtime import EngineRuntime
from evaluator.ports import AlertRepository


@dataclass
class Services:
    """What the routes of one app share; built once by ``create_app``."""

    settings: Settings
    engine: Engine
    runtime: EngineRuntime  # the engine's parts of this app, built once by create_app from these settings
    catalog: QueryCatalog = DEFAULT_CATALOG
    stores: dict[str, ObjectStorePort] = field(default_factory=dict)
    flush_intervals: dict[str, timedelta] = field(default_factory=dict)
    kube: KubeDefinitions | None = None  # --definitions=kubernetes: the cluster's custom resources

    def __post_init__(self) -> None:
        if not self.flush_intervals:
            self.flush_intervals = self.settings.flush_intervals()
        if self.kube is None and self.settings.definitions == "kubernetes":
            self.kube = KubeDefinitions.connect(
                self.settings.kubeconfig, catalog=self.catalog, flush_intervals=self.flush_intervals
            )
        if not self.stores:
            self.stores = self.kube.stores() if self.kube else {k.kind: ObjectStore(self.engine, k) for k in KINDS}

    @property
    def repository(self) -> AlertRepository:
        return self.kube.repository if self.kube else SqlAlertRepository(self.engine)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_runtime(request: Request) -> EngineRuntime:
    runtime: EngineRuntime = request.app.state.services.runtime
    return runtime


async def read_object_body(request: Request) -> Any:
    """The body as one decoded object (JSON, or YAML by Content-Type)."""
    body = decode_body(await request.body(), request.headers.get("content-type"))
    _check_resource_version(body)
    return body


def _check_resource_version(body: Any) -> None:
    """A resourceVersion is ASCII digits: ``"²"`` and ``"١"`` pass ``str.isdigit`` but are no version we issued."""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    value = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    if isinstance(value, str) and not value.isascii():
        reason = "must be the resourceVersion string the server returned (ASCII digits)"
        raise SpecInvalid([FieldError("metadata.resourceVersion", value[:40], reason)])


ServicesDep = Annotated[Services, Depends(get_services)]
RuntimeDep = Annotated[EngineRuntime, Depends(get_runtime)]
ObjectBody = Annotated[Any, Depends(read_object_body)]
