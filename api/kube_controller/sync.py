"""List and watch one kind of custom resource into a cache, validating each object with the API's rules.

``ResourceCache`` holds the objects of one kind as the API server last sent them, each with the outcome of
``api.resources.parse_object`` (the same checks as a POST to the REST API): a valid GlobalAlert carries its
``StoredAlert``; an invalid one carries its ``FieldError``s. ``Watcher`` keeps the cache current: a list, then a
watch from the list's resourceVersion; a watch that ends is resumed from the newest version seen (bookmarks
included); an expired version (410 Gone) or a broken connection means a new list, after a back-off.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from api.http import ApiError
from api.kube_controller.client import KubeApiError, KubeClient
from api.resources import Kind, StoredObject, parse_object
from evaluator.alerts import (
    DEFAULT_CATALOG,
    DEFAULT_FLUSH_INTERVALS,
    AlertStatus,
    ErrorCondition,
    FieldError,
    QueryCatalog,
    SpecInvalid,
)
from evaluator.ports import StoredAlert

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    """One object: as the server sent it, in the store's shape, its status, and whether it is valid."""

    raw: dict[str, Any]
    stored: StoredObject
    status: AlertStatus | None
    alert: StoredAlert | None  # a valid GlobalAlert (None for templates and invalid objects)
    errors: tuple[FieldError, ...]  # why the object is invalid (empty when valid)

    @property
    def name(self) -> str:
        return self.stored.name

    @property
    def resource_version(self) -> str:
        return str(self.raw["metadata"].get("resourceVersion", ""))


class NotSynced(ApiError):
    """The cache has not been filled by a first list yet (the API server is unreachable or refuses): 503."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "ServiceUnavailable", message, headers={"Retry-After": "5"})


class ResourceCache:
    """The objects of one kind, by name; safe to read from any thread."""

    def __init__(
        self,
        kind: Kind,
        *,
        catalog: QueryCatalog = DEFAULT_CATALOG,
        flush_intervals: Mapping[str, timedelta] = DEFAULT_FLUSH_INTERVALS,
    ) -> None:
        self.kind = kind
        self._catalog = catalog
        self._flush_intervals = flush_intervals
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        self.last_error = ""  # why the last list or watch failed, for NotSynced's message

    def entry(self, raw: dict[str, Any]) -> Entry:
        """Validate one object as the REST API would (its spec; Kubernetes already checked its metadata)."""
        metadata = raw.get("metadata") or {}
        name = str(metadata.get("name", ""))
        submitted = {
            "apiVersion": raw.get("apiVersion"),
            "kind": raw.get("kind"),
            "metadata": {k: metadata[k] for k in ("name", "labels", "annotations") if k in metadata},
            "spec": raw.get("spec"),
        }
        errors: tuple[FieldError, ...] = ()
        parsed = None
        try:
            parsed = parse_object(
                submitted, kind=self.kind, catalog=self._catalog, flush_intervals=self._flush_intervals
            )
        except SpecInvalid as exc:
            errors = tuple(exc.errors)
        created = parse_time(metadata.get("creationTimestamp")) or _EPOCH
        stored = StoredObject(
            name=name,
            uid=str(metadata.get("uid", "")),
            resource_version=_int(metadata.get("resourceVersion")),
            generation=_int(metadata.get("generation")) or 1,
            created=created,
            updated=created,
            labels=dict(metadata.get("labels") or {}),
            annotations=dict(metadata.get("annotations") or {}),
            spec=dict(raw.get("spec") or {}),
        )
        alert = None
        if parsed is not None and not self.kind.template:
            alert = StoredAlert(
                name=name,
                spec=parsed.spec,
                uid=stored.uid,
                resourceVersion=str(metadata.get("resourceVersion", "")),
                generation=stored.generation,
                created=created,
                updated=created,
            )
        status = None if self.kind.template or not raw.get("status") else status_from_dict(raw["status"])
        return Entry(raw=raw, stored=stored, status=status, alert=alert, errors=errors)

    def replace_all(self, items: Iterable[dict[str, Any]], resource_version: str) -> list[Entry]:
        entries = {e.name: e for e in (self.entry(i) for i in items)}
        with self._lock:
            self._entries = entries
            self.resource_version = resource_version
            self.last_error = ""
        self.synced.set()
        return sorted(entries.values(), key=lambda e: e.name)

    def upsert(self, raw: dict[str, Any]) -> Entry | None:
        """Store the object unless the cache already holds a newer version of it; returns what is stored."""
        new = self.entry(raw)
        with self._lock:
            old = self._entries.get(new.name)
            newer = old is not None and old.stored.resource_version > new.stored.resource_version
            if old is not None and newer and old.stored.uid == new.stored.uid:
                return None
            self._entries[new.name] = new
        return new

    def remove(self, raw: dict[str, Any]) -> None:
        name = str((raw.get("metadata") or {}).get("name", ""))
        with self._lock:
            self._entries.pop(name, None)

    def seen(self, resource_version: str) -> None:
        if resource_version:
            self.resource_version = resource_version

    def get(self, name: str) -> Entry | None:
        self._require_sync()
        with self._lock:
            return self._entries.get(name)

    def entries(self) -> list[Entry]:
        self._require_sync()
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.name)

    def _require_sync(self) -> None:
        if not self.synced.is_set():
            why = f": {self.last_error}" if self.last_error else ""
            raise NotSynced(f"{self.kind.plural}.projectcalico.org not listed from the cluster yet{why}")


class Watcher:
    """Keeps one ``ResourceCache`` current from the API server, in a thread of its own, until stopped."""

    def __init__(
        self,
        client: KubeClient,
        cache: ResourceCache,
        *,
        on_change: Callable[[Entry], None] = lambda _entry: None,
        on_connected: Callable[[], None] = lambda: None,
        watch_timeout: int = 300,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
    ) -> None:
        self.client = client
        self.cache = cache
        self.on_change = on_change
        self.on_connected = on_connected  # after each list and each watch (re)opened
        self.watch_timeout = watch_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.lists = 0  # how many lists succeeded (a relist after 410 or a broken watch counts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def plural(self) -> str:
        return self.cache.kind.plural

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.plural}", daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        """Apply no more events from now on. A watch blocked on a quiet connection ends by itself at its
        timeout: the thread is a daemon and changes nothing after this."""
        self._stop.set()

    def stop(self, timeout: float = 0.5) -> None:
        self.signal_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._list()
                failures = 0
                while not self._stop.is_set():
                    self._watch()
            except KubeApiError as exc:
                if exc.code == 410:
                    log.info("%s: watch version expired; listing again", self.plural)
                    continue
                failures += 1
                self._failed(_explain(exc, self.plural), failures)
            except (httpx.HTTPError, OSError, ValueError) as exc:  # unreachable, token unreadable, bad JSON
                failures += 1
                self._failed(f"{type(exc).__name__}: {exc}", failures)
            except Exception as exc:
                failures += 1
                log.exception("%s: unexpected error in list/watch", self.plural)
                self._failed(f"{type(exc).__name__}: {exc}", failures)

    def _failed(self, why: str, failures: int) -> None:
        self.cache.last_error = why
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(failures - 1, 10)) * random.uniform(0.8, 1.2)
        log.warning("%s: list/watch failed (retry in %.1fs): %s", self.plural, delay, why)
        self._stop.wait(delay)

    def _list(self) -> None:
        items, resource_version = self.client.list(self.plural)
        if self._stop.is_set():
            return
        entries = self.cache.replace_all(items, resource_version)
        self.lists += 1
        for entry in entries:
            self.on_change(entry)
        self.on_connected()

    def _watch(self) -> None:
        timeout = max(1, int(self.watch_timeout * random.uniform(0.8, 1.0)))
        with self.client.watch(self.plural, self.cache.resource_version, timeout) as events:
            self.on_connected()  # the server answers again (e.g. restarted, resumed without a new list)
            for event in events:
                if self._stop.is_set():
                    return
                version = str((event.object.get("metadata") or {}).get("resourceVersion", ""))
                if event.type == "DELETED":
                    self.cache.remove(event.object)
                elif event.type in ("ADDED", "MODIFIED"):
                    entry = self.cache.upsert(event.object)
                    if entry is not None:
                        self.on_change(entry)
                self.cache.seen(version)


def _explain(exc: KubeApiError, plural: str) -> str:
    if exc.code == 404:
        return (
            f"{exc}; is the CRD {plural}.projectcalico.org installed? "
            f"(kubectl apply -f helm/policywatch/crds/{plural}.yaml)"
        )
    if exc.code in (401, 403):
        return f"{exc}; grant get/list/watch on {plural}.projectcalico.org (the chart's evaluator ClusterRole)"
    return str(exc)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def status_from_dict(value: Any) -> AlertStatus:
    if not isinstance(value, Mapping):
        return AlertStatus()
    conditions = value.get("errorConditions") or []
    return AlertStatus(
        lastUpdate=parse_time(value.get("lastUpdate")),
        active=bool(value.get("active", False)),
        healthy=bool(value.get("healthy", False)),
        executionState=str(value.get("executionState", "")),
        lastExecuted=parse_time(value.get("lastExecuted")),
        lastEvent=parse_time(value.get("lastEvent")),
        errorConditions=tuple(
            ErrorCondition(str(c.get("type", "")), str(c.get("message", "")))
            for c in conditions
            if isinstance(c, Mapping)
        ),
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
