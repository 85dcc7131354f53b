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
from evaluator.alerts import DEFAULT_CATALOG, QueryCatalog
from evaluator.engine.runtime import EngineRuntime, runtime_for
from evaluator.ports import AlertRepository


@dataclass
class Services:
    """What the routes of one app share; built once by ``create_app``."""

    settings: Settings
    engine: Engine
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

    @property
    def runtime(self) -> EngineRuntime:
        """The engine's parts of this app, built from this process's one ``Settings`` (an ``EngineSettings``)."""
        return runtime_for(self.engine, self.repository, settings=self.settings)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def read_object_body(request: Request) -> Any:
    """The body as one decoded object (JSON, or YAML by Content-Type)."""
    return decode_body(await request.body(), request.headers.get("content-type"))


ServicesDep = Annotated[Services, Depends(get_services)]
ObjectBody = Annotated[Any, Depends(read_object_body)]
