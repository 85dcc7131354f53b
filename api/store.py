"""SQL persistence of GlobalAlerts and GlobalAlertTemplates, and the scheduler's ``AlertRepository``.

Spec writes (``ObjectStore``) touch only the object tables; status writes (``SqlAlertRepository``) touch
only ``global_alert_status``. A PUT is an UPDATE guarded by the resourceVersion it read, so of two
concurrent PUTs from the same version exactly one wins and the other gets ``Conflict``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Engine, Row, Select, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from api.models import GlobalAlertRow, GlobalAlertStatusRow, GlobalAlertTemplateRow
from api.resources import GLOBAL_ALERT, Kind, ObjectIn, StoredObject
from evaluator.alerts import MAX_ERROR_CONDITIONS, AlertStatus, ErrorCondition, GlobalAlertSpec
from evaluator.ports import StoredAlert

Clock = Callable[[], datetime]
OBJECT_TABLES: dict[str, Table] = {
    "GlobalAlert": GlobalAlertRow.__table__,  # type: ignore[dict-item]
    "GlobalAlertTemplate": GlobalAlertTemplateRow.__table__,  # type: ignore[dict-item]
}
STATUS_TABLE: Table = GlobalAlertStatusRow.__table__  # type: ignore[assignment]
_PUT_RETRIES = 5


def read_only(engine: Engine) -> Engine:
    """The engine for single-statement reads. On PostgreSQL autocommit, so that a read costs one round
    trip instead of BEGIN, SELECT and ROLLBACK (one statement sees one snapshot anyway); SQLite has no
    round trips to save, and switching its isolation level on every checkout costs more than it gains."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreError(Exception):
    """Base of the store's outcomes that the API turns into HTTP errors."""

    def __init__(self, kind: Kind, name: str, message: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(message)


class NotFound(StoreError):
    def __init__(self, kind: Kind, name: str) -> None:
        super().__init__(kind, name, f'{kind.kind} "{name}" not found')


class AlreadyExists(StoreError):
    def __init__(self, kind: Kind, name: str) -> None:
        super().__init__(kind, name, f'{kind.kind} "{name}" already exists; use PUT (replace/apply) to change it')


class Conflict(StoreError):
    def __init__(self, kind: Kind, name: str, sent: int, current: int | None) -> None:
        now = f"is now {current}" if current is not None else "changed meanwhile"
        super().__init__(
            kind,
            name,
            f'{kind.kind} "{name}" was modified: resourceVersion {sent} {now}; get it again and re-apply your change',
        )


class ObjectStorePort(Protocol):
    """What the routes need of a store of one kind: ``ObjectStore`` (SQL), or the read-only view of the
    cluster's custom resources (``api.kube_controller.rest.ReadOnlyStore``, ``--definitions=kubernetes``)."""

    kind: Kind

    def create(self, *, obj: ObjectIn) -> StoredObject: ...

    def get(self, name: str) -> StoredObject | None: ...

    def get_with_status(self, name: str) -> tuple[StoredObject, AlertStatus | None] | None: ...

    def list_page(
        self, *, limit: int | None = None, after: str | None = None
    ) -> tuple[list[tuple[StoredObject, AlertStatus | None]], bool]: ...

    def max_resource_version(self) -> int: ...

    def replace(self, *, obj: ObjectIn) -> StoredObject: ...

    def delete(self, name: str) -> StoredObject | None: ...

    def statuses(self, names: list[str]) -> dict[str, AlertStatus]: ...


class ObjectStore:
    """Create, read, list, replace and delete objects of one kind."""

    def __init__(self, engine: Engine, kind: Kind, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.reader = read_only(engine)
        self.kind = kind
        self.table = OBJECT_TABLES[kind.kind]
        self.clock = clock

    def create(self, *, obj: ObjectIn) -> StoredObject:
        now = self.clock()
        stored = StoredObject(
            name=obj.name,
            uid=str(uuid.uuid4()),
            resource_version=1,
            generation=1,
            created=now,
            updated=now,
            labels=obj.labels,
            annotations=obj.annotations,
            spec=obj.spec.to_dict(),
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(self.table).values(**_row_values(stored)))
        except IntegrityError as exc:
            if self.get(obj.name) is not None:
                raise AlreadyExists(self.kind, obj.name) from exc
            raise
        return stored

    def get(self, name: str) -> StoredObject | None:
        with self.reader.connect() as conn:
            row = conn.execute(select(self.table).where(self.table.c.name == name)).first()
        return None if row is None else _stored(row)

    def _select(self) -> Select[Any]:
        """The object table, joined (for GlobalAlerts) with the status columns as ``status_*``."""
        if self.kind != GLOBAL_ALERT:
            return select(self.table)
        return select(self.table, *[c.label(f"status_{c.name}") for c in STATUS_TABLE.c]).outerjoin(
            STATUS_TABLE, STATUS_TABLE.c.name == self.table.c.name
        )

    def _with_status(self, row: Row[Any]) -> tuple[StoredObject, AlertStatus | None]:
        if self.kind != GLOBAL_ALERT or row.status_name is None:
            return _stored(row), None
        return _stored(row), _status(row, prefix="status_")

    def get_with_status(self, name: str) -> tuple[StoredObject, AlertStatus | None] | None:
        """One object and (for GlobalAlerts) the status the scheduler wrote, in one query."""
        with self.reader.connect() as conn:
            row = conn.execute(self._select().where(self.table.c.name == name)).first()
        return None if row is None else self._with_status(row)

    def list_page(
        self, *, limit: int | None = None, after: str | None = None
    ) -> tuple[list[tuple[StoredObject, AlertStatus | None]], bool]:
        """Objects (with status) ordered by name, after the name ``after``; the flag says whether more
        follow."""
        query = self._select().order_by(self.table.c.name)
        if after is not None:
            query = query.where(self.table.c.name > after)
        if limit is not None:
            query = query.limit(limit + 1)
        with self.reader.connect() as conn:
            rows = conn.execute(query).all()
        more = limit is not None and len(rows) > limit
        return [self._with_status(r) for r in rows[:limit]], more

    def max_resource_version(self) -> int:
        with self.reader.connect() as conn:
            value = conn.execute(select(func.max(self.table.c.resource_version))).scalar()
        return int(value or 0)

    def replace(self, *, obj: ObjectIn) -> StoredObject:
        """Replace labels, annotations and spec. With ``obj.resource_version`` the write happens only if
        the object is still at that version (else ``Conflict``); without it, the latest wins."""
        seen: int | None = None
        for _ in range(_PUT_RETRIES):
            current = self.get(obj.name)
            if current is None:
                raise NotFound(self.kind, obj.name)
            if obj.resource_version is not None and obj.resource_version != current.resource_version:
                raise Conflict(self.kind, obj.name, obj.resource_version, current.resource_version)
            seen = current.resource_version
            spec = obj.spec.to_dict()
            changed = spec != current.spec
            new = replace(
                current,
                resource_version=current.resource_version + 1,
                generation=current.generation + (1 if changed else 0),
                updated=self.clock() if changed else current.updated,
                labels=obj.labels,
                annotations=obj.annotations,
                spec=spec,
            )
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(self.table)
                    .where(self.table.c.name == obj.name)
                    .where(self.table.c.resource_version == current.resource_version)
                    .values(
                        resource_version=new.resource_version,
                        generation=new.generation,
                        updated=new.updated,
                        labels=new.labels,
                        annotations=new.annotations,
                        spec=new.spec,
                    )
                )
            if result.rowcount == 1:
                return new
            if obj.resource_version is not None:
                raise Conflict(self.kind, obj.name, obj.resource_version, None)
        raise Conflict(self.kind, obj.name, seen or 0, None)

    def delete(self, name: str) -> StoredObject | None:
        with self.engine.begin() as conn:
            row = conn.execute(select(self.table).where(self.table.c.name == name)).first()
            if row is None:
                return None
            if self.kind == GLOBAL_ALERT:
                conn.execute(delete(STATUS_TABLE).where(STATUS_TABLE.c.name == name))
            conn.execute(delete(self.table).where(self.table.c.name == name))
        return _stored(row)

    def statuses(self, names: list[str]) -> dict[str, AlertStatus]:
        """Status of the given GlobalAlerts (only those the scheduler wrote)."""
        if not names:
            return {}
        with self.reader.connect() as conn:
            if len(names) > 500:
                rows = conn.execute(select(STATUS_TABLE)).all()
            else:
                rows = conn.execute(select(STATUS_TABLE).where(STATUS_TABLE.c.name.in_(names))).all()
        wanted: set[str] = set(names)
        return {r.name: _status(r) for r in rows if r.name in wanted}


class SqlAlertRepository:
    """``evaluator.ports.AlertRepository`` over the API's tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = read_only(engine)
        self.alerts = OBJECT_TABLES[GLOBAL_ALERT.kind]

    def list_alerts(self) -> list[StoredAlert]:
        with self.reader.connect() as conn:
            rows = conn.execute(select(self.alerts).order_by(self.alerts.c.name)).all()
        return [_stored_alert(_stored(r)) for r in rows]

    def get_alert(self, name: str) -> StoredAlert | None:
        with self.reader.connect() as conn:
            row = conn.execute(select(self.alerts).where(self.alerts.c.name == name)).first()
        return None if row is None else _stored_alert(_stored(row))

    def get_status(self, name: str) -> AlertStatus | None:
        with self.reader.connect() as conn:
            row = conn.execute(select(STATUS_TABLE).where(STATUS_TABLE.c.name == name)).first()
        return None if row is None else _status(row)

    def write_status(self, name: str, status: AlertStatus) -> None:
        values = _status_values(status)
        for _ in range(_PUT_RETRIES):
            with self.engine.begin() as conn:
                result = conn.execute(update(STATUS_TABLE).where(STATUS_TABLE.c.name == name).values(**values))
                if result.rowcount == 1:
                    return
                exists = conn.execute(select(self.alerts.c.name).where(self.alerts.c.name == name)).first()
                if exists is None:
                    return
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(STATUS_TABLE).values(name=name, **values))
                return
            except IntegrityError:
                continue  # inserted concurrently (update next time) or the alert was just deleted


def _row_values(stored: StoredObject) -> dict[str, Any]:
    return {
        "name": stored.name,
        "uid": stored.uid,
        "resource_version": stored.resource_version,
        "generation": stored.generation,
        "created": stored.created,
        "updated": stored.updated,
        "labels": stored.labels,
        "annotations": stored.annotations,
        "spec": stored.spec,
    }


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(row: Row[Any]) -> StoredObject:
    created = _utc(row.created)
    updated = _utc(row.updated)
    assert created is not None and updated is not None
    return StoredObject(
        name=row.name,
        uid=row.uid,
        resource_version=row.resource_version,
        generation=row.generation,
        created=created,
        updated=updated,
        labels=dict(row.labels or {}),
        annotations=dict(row.annotations or {}),
        spec=dict(row.spec),
    )


def _stored_alert(stored: StoredObject) -> StoredAlert:
    return StoredAlert(
        name=stored.name,
        spec=GlobalAlertSpec.from_dict(stored.spec),
        uid=stored.uid,
        resourceVersion=str(stored.resource_version),
        generation=stored.generation,
        created=stored.created,
        updated=stored.updated,
    )


def _status(row: Row[Any], prefix: str = "") -> AlertStatus:
    values = row._mapping
    return AlertStatus(
        lastUpdate=_utc(values[f"{prefix}last_update"]),
        active=bool(values[f"{prefix}active"]),
        healthy=bool(values[f"{prefix}healthy"]),
        executionState=values[f"{prefix}execution_state"],
        lastExecuted=_utc(values[f"{prefix}last_executed"]),
        lastEvent=_utc(values[f"{prefix}last_event"]),
        errorConditions=tuple(
            ErrorCondition(type=str(c.get("type", "")), message=str(c.get("message", "")))
            for c in (values[f"{prefix}error_conditions"] or [])
        ),
    )


def _status_values(status: AlertStatus) -> dict[str, Any]:
    newest = status.errorConditions[-MAX_ERROR_CONDITIONS:]
    return {
        "last_update": status.lastUpdate,
        "active": status.active,
        "healthy": status.healthy,
        "execution_state": status.executionState,
        "last_executed": status.lastExecuted,
        "last_event": status.lastEvent,
        "error_conditions": [c.to_dict() for c in newest],
    }
