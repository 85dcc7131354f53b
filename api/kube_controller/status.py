"""GlobalAlert status into the cluster: the status subresource, and the scheduler's ``AlertRepository``.

``StatusWriter`` PUTs ``/status`` with the resourceVersion of the object it last saw; on a conflict (another
replica wrote, or the object was edited) it reads the object again and retries. A write that cannot reach the
API server is kept (the newest per alert) and written once a list or watch succeeds again. An object that fails
our validation gets ``healthy: false``, ``executionState: invalid`` and one error condition per problem; the
scheduler never runs it and never writes over that status.

``KubeAlertRepository`` is what the scheduler reads and writes: the valid GlobalAlerts of the cache, their status
(the pending write first), and status writes through the writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from api.kube_controller.client import KubeApiError, KubeClient
from api.kube_controller.sync import Entry, ResourceCache
from evaluator.alerts import MAX_ERROR_CONDITIONS, AlertStatus, ErrorCondition, FieldError
from evaluator.ports import StoredAlert

log = logging.getLogger(__name__)
INVALID = "invalid"  # executionState of an object our validation refuses
INVALID_TYPE = "SpecInvalid"  # errorConditions[].type for each of its problems
_CONFLICT_RETRIES = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


def invalid_status(errors: tuple[FieldError, ...], now: datetime) -> AlertStatus:
    conditions = tuple(
        ErrorCondition(INVALID_TYPE, f"{e.path or '(object)'}: {e.reason} (value: {e.value!r})") for e in errors
    )
    return AlertStatus(
        lastUpdate=now,
        active=False,
        healthy=False,
        executionState=INVALID,
        errorConditions=conditions[:MAX_ERROR_CONDITIONS],
    )


def _same_outcome(a: AlertStatus | None, b: AlertStatus) -> bool:
    """Equal but for lastUpdate: rewriting it would only bump the resourceVersion (and wake every watcher)."""
    if a is None:
        return False
    return (a.active, a.healthy, a.executionState, a.errorConditions) == (
        b.active,
        b.healthy,
        b.executionState,
        b.errorConditions,
    )


class StatusWriter:
    def __init__(self, client: KubeClient, cache: ResourceCache, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._client = client
        self._cache = cache
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, AlertStatus]] = {}  # name -> (sequence number, status) kept
        self._sequence = 0
        self.writes = 0  # successful status writes (for tests and logs)

    @property
    def _plural(self) -> str:
        return self._cache.kind.plural

    def pending(self, name: str) -> AlertStatus | None:
        with self._lock:
            kept = self._pending.get(name)
        return None if kept is None else kept[1]

    def write(self, name: str, status: AlertStatus, *, invalid: bool = False) -> bool:
        """Write ``status`` to the GlobalAlert ``name``; False when kept for later (or no longer wanted)."""
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        try:
            written = self._write(name, status, invalid=invalid)
        except (httpx.HTTPError, KubeApiError, OSError, ValueError) as exc:  # away, refused, token unreadable
            with self._lock:
                if self._pending.get(name, (0, status))[0] <= sequence:
                    self._pending[name] = (sequence, status)
            log.warning("status of GlobalAlert %s kept for retry: %s", name, exc)
            return False
        with self._lock:
            if self._pending.get(name, (sequence + 1, status))[0] <= sequence:  # none newer kept meanwhile
                self._pending.pop(name)
        return written

    def _write(self, name: str, status: AlertStatus, *, invalid: bool) -> bool:
        entry = self._cache.get(name)
        if entry is None:
            return False  # deleted meanwhile
        obj: dict[str, Any] = entry.raw
        for _ in range(_CONFLICT_RETRIES):
            if (entry.alert is None) != invalid:
                return False  # became valid or invalid meanwhile: that outcome's status is written instead
            body = {**obj, "status": status.to_dict()}
            body["status"]["errorConditions"] = body["status"]["errorConditions"][-MAX_ERROR_CONDITIONS:]
            try:
                answer = self._client.replace_status(self._plural, body)
            except KubeApiError as exc:
                if exc.code == 404:
                    return False
                if exc.code != 409:
                    raise
                try:
                    obj = self._client.get(self._plural, name)
                except KubeApiError as again:
                    if again.code == 404:
                        return False
                    raise
                entry = self._cache.upsert(obj) or self._cache.entry(obj)
                continue
            self._cache.upsert(answer)
            self.writes += 1
            return True
        raise KubeApiError(409, "Conflict", f"GlobalAlert {name}: status still conflicting after retries")

    def flush(self) -> None:
        """Retry the kept writes (called whenever a list or watch succeeds)."""
        with self._lock:
            pending = dict(self._pending)
        for name, (_, status) in pending.items():
            entry = self._cache.get(name)
            if entry is None:
                with self._lock:
                    self._pending.pop(name, None)
                continue
            self.write(name, status, invalid=entry.alert is None)

    def report_invalid(self, entry: Entry) -> None:
        """An object our validation refuses: say so in its status, once per outcome."""
        if not entry.errors or entry.stored.name == "":
            return
        desired = invalid_status(entry.errors, self._clock())
        if _same_outcome(entry.status, desired):
            return
        log.warning(
            "GlobalAlert %s is invalid and not run: %s",
            entry.name,
            "; ".join(c.message for c in desired.errorConditions),
        )
        self.write(entry.name, desired, invalid=True)


class KubeAlertRepository:
    """``evaluator.ports.AlertRepository`` over the cluster's GlobalAlerts."""

    def __init__(self, cache: ResourceCache, writer: StatusWriter) -> None:
        self._cache = cache
        self._writer = writer

    def list_alerts(self) -> list[StoredAlert]:
        return [e.alert for e in self._cache.entries() if e.alert is not None]

    def get_alert(self, name: str) -> StoredAlert | None:
        entry = self._cache.get(name)
        return None if entry is None else entry.alert

    def get_status(self, name: str) -> AlertStatus | None:
        pending = self._writer.pending(name)
        if pending is not None:
            return pending
        entry = self._cache.get(name)
        return None if entry is None else entry.status

    def write_status(self, name: str, status: AlertStatus) -> None:
        entry = self._cache.get(name)
        if entry is None or entry.alert is None:
            return  # deleted, or invalid: its status says why and stays
        self._writer.write(name, status)
