"""``--definitions=kubernetes``: the cluster's GlobalAlert / GlobalAlertTemplate custom resources are the store.

``KubeDefinitions`` wires the parts: a ``Watcher`` per kind keeps a ``ResourceCache`` current; invalid
GlobalAlerts get their status from the ``StatusWriter`` as they arrive; the scheduler reads the valid ones through
``KubeAlertRepository`` and writes status back through the same writer; the REST API reads the caches through
``ReadOnlyStore``. It is a service of the app, started before the scheduler: ``start()`` waits (a bounded time)
for the first list, so the scheduler never mistakes an empty cache for "every alert was deleted".

The scheduler's own tables (leases, schedule, runs, events) stay in the evaluator's database, so several
replicas sharing one database still run each alert-period once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from api.kube_controller.client import KubeClient, resolve_config
from api.kube_controller.rest import ReadOnlyStore
from api.kube_controller.status import KubeAlertRepository, StatusWriter
from api.kube_controller.sync import Entry, ResourceCache, Watcher
from api.resources import GLOBAL_ALERT, GLOBAL_ALERT_TEMPLATE
from api.store import ObjectStorePort
from evaluator.alerts import DEFAULT_CATALOG, DEFAULT_FLUSH_INTERVALS, QueryCatalog

log = logging.getLogger(__name__)


class KubeDefinitions:
    def __init__(
        self,
        client: KubeClient,
        *,
        catalog: QueryCatalog = DEFAULT_CATALOG,
        flush_intervals: Mapping[str, timedelta] = DEFAULT_FLUSH_INTERVALS,
        watch_timeout: int = 300,
        initial_sync_timeout: float = 30.0,
    ) -> None:
        self.client = client
        self.initial_sync_timeout = initial_sync_timeout
        self.alerts = ResourceCache(GLOBAL_ALERT, catalog=catalog, flush_intervals=flush_intervals)
        self.templates = ResourceCache(GLOBAL_ALERT_TEMPLATE, catalog=catalog, flush_intervals=flush_intervals)
        self.status = StatusWriter(client, self.alerts)
        self.repository = KubeAlertRepository(self.alerts, self.status)
        self.watchers = [
            Watcher(
                client,
                self.alerts,
                on_change=self._alert_changed,
                on_connected=self.status.flush,
                watch_timeout=watch_timeout,
            ),
            Watcher(client, self.templates, watch_timeout=watch_timeout),
        ]

    @classmethod
    def connect(
        cls,
        kubeconfig: Path | None,
        *,
        catalog: QueryCatalog = DEFAULT_CATALOG,
        flush_intervals: Mapping[str, timedelta] = DEFAULT_FLUSH_INTERVALS,
    ) -> KubeDefinitions:
        """From ``--kubeconfig``, else the Pod's ServiceAccount, else ``$KUBECONFIG``; ``ConfigError`` if none."""
        config = resolve_config(kubeconfig)
        log.info("GlobalAlerts from the cluster at %s (%s)", config.server, config.source)
        return cls(KubeClient(config), catalog=catalog, flush_intervals=flush_intervals)

    def stores(self) -> dict[str, ObjectStorePort]:
        return {
            GLOBAL_ALERT.kind: ReadOnlyStore(self.alerts),
            GLOBAL_ALERT_TEMPLATE.kind: ReadOnlyStore(self.templates),
        }

    def _alert_changed(self, entry: Entry) -> None:
        if entry.errors:
            self.status.report_invalid(entry)

    async def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()
        synced = await asyncio.to_thread(self._wait_synced)
        if not synced:
            log.error(
                "GlobalAlerts not listed from the cluster within %.0fs (still trying): %s",
                self.initial_sync_timeout,
                self.alerts.last_error or self.templates.last_error or "no answer",
            )

    def _wait_synced(self) -> bool:
        return all(w.cache.synced.wait(self.initial_sync_timeout) for w in self.watchers)

    async def stop(self) -> None:
        for watcher in self.watchers:
            watcher.signal_stop()
        for watcher in self.watchers:
            await asyncio.to_thread(watcher.stop)
        self.client.close()
