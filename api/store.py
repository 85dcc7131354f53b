"""SQL persistence of GlobalAlerts and GlobalAlertTemplates, and the scheduler's ``AlertRepository``.

Spec writes (``ObjectStore``) touch only the object tables and the change log; status writes
(``SqlAlertRepository``) touch only ``global_alert_status``. Every spec write draws a resourceVersion from
one global counter, as Kubernetes does, so a version never repeats across delete and re-create; a PUT
carrying a resourceVersion (or uid) applies only to that version (incarnation), so of two concurrent PUTs
from the same version exactly one wins and the other gets ``Conflict``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Row, Select, Table, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from api.models import (
    GlobalAlertRow,
    GlobalAlertStatusRow,
    GlobalAlertTemplateRow,
    ResourceChangeRow,
    ResourceVersionRow,
)
from api.resources import GLOBAL_ALERT, Kind, ObjectIn, StoredObject, render_object
from api.store_errors import AlreadyExists, Conflict, Expired, NotFound, ObjectStoreError, UidConflict
from evaluator.alerts import MAX_ERROR_CONDITIONS, AlertStatus, ErrorCondition, GlobalAlertSpec
from evaluator.ports import StoredAlert

__all__ = [
    "AlreadyExists",
    "Conflict",
    "Expired",
    "NotFound",
    "ObjectStore",
    "ObjectStoreError",
    "SqlAlertRepository",
    "UidConflict",
]

Clock = Callable[[], datetime]
OBJECT_TABLES: dict[str, Table] = {
    "GlobalAlert": GlobalAlertRow.__table__,  # type: ignore[dict-item]
    "GlobalAlertTemplate": GlobalAlertTemplateRow.__table__,  # type: ignore[dict-item]
}
STATUS_TABLE: Table = GlobalAlertStatusRow.__table__  # type: ignore[assignment]
VERSIONS_TABLE: Table = ResourceVersionRow.__table__  # type: ignore[assignment]
CHANGES_TABLE: Table = ResourceChangeRow.__table__  # type: ignore[assignment]
# Changes kept for watches (pruned every _PRUNE_EVERY writes); a watch from further back gets 410 Expired.
WATCH_WINDOW = 10_000
_PRUNE_EVERY = 100
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


class _RolledBack(Exception):
    """Ends a dry-run write's transaction (rolled back) carrying the object it would have stored."""

    def __init__(self, stored: StoredObject) -> None:
        self.stored = stored


class ObjectStorePort(Protocol):
    """What the routes need of a store of one kind: ``ObjectStore`` (SQL), or the read-only view of the
    cluster's custom resources (``api.kube_controller.rest.ReadOnlyStore``, ``--definitions=kubernetes``)."""

    kind: Kind

    def create(self, *, obj: ObjectIn, dry_run: bool = False) -> StoredObject: ...

    def get(self, name: str) -> StoredObject | None: ...

    def get_with_status(self, name: str) -> tuple[StoredObject, AlertStatus | None] | None: ...

    def list_page(
        self, *, limit: int | None = None, after: str | None = None
    ) -> tuple[list[tuple[StoredObject, AlertStatus | None]], bool]: ...

    def max_resource_version(self) -> int: ...

    def replace(self, *, obj: ObjectIn, dry_run: bool = False) -> StoredObject: ...

    def delete(
        self, name: str, *, resource_version: int | None = None, uid: str | None = None, dry_run: bool = False
    ) -> StoredObject | None: ...

    def changes(self, *, after: int, limit: int) -> tuple[list[Change], int]: ...

    def statuses(self, names: list[str]) -> dict[str, AlertStatus]: ...


def _record_change(conn: Connection, kind: Kind, change: str, stored: StoredObject) -> None:
    """Append the write to the change log (watch), pruning entries older than the kept window."""
    conn.execute(
        insert(CHANGES_TABLE).values(
            resource_version=stored.resource_version,
            kind=kind.kind,
            name=stored.name,
            type=change,
            object=render_object(kind, stored),
        )
    )
    if stored.resource_version % _PRUNE_EVERY == 0:
        oldest = stored.resource_version - WATCH_WINDOW
        conn.execute(delete(CHANGES_TABLE).where(CHANGES_TABLE.c.resource_version <= oldest))
        conn.execute(
            update(VERSIONS_TABLE)
            .where(VERSIONS_TABLE.c.id == 1)
            .where(VERSIONS_TABLE.c.compacted < oldest)
            .values(compacted=oldest)
        )


class ObjectStore:
    """Create, read, list, replace and delete objects of one kind.

    Every write is one transaction that first draws its resourceVersion from the global counter
    (``resource_versions``), which queues writers of both kinds on that row: preconditions are checked
    against the latest committed state, so an unconditional PUT never conflicts, of concurrent DELETEs
    exactly one finds the object, and a DELETE racing a POST of one name is ordered, never an error.
    ``dry_run`` runs the whole write, checks included, then rolls it back (Kubernetes' ``dryRun=All``).
    """

    def __init__(self, engine: Engine, kind: Kind, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.reader = read_only(engine)
        self.kind = kind
        self.table = OBJECT_TABLES[kind.kind]
        self.clock = clock

    def create(self, *, obj: ObjectIn, dry_run: bool = False) -> StoredObject:
        now = self.clock()
        try:
            return self._create(obj, now, dry_run=dry_run)
        except _RolledBack as done:
            return done.stored
        except IntegrityError as exc:  # a writer outside this store (the store's own are queued on the counter)
            if self.get(obj.name) is not None:
                raise AlreadyExists(self.kind, obj.name) from exc
            raise  # gone again meanwhile: 409 Conflict (api.faults)

    def _create(self, obj: ObjectIn, now: datetime, *, dry_run: bool) -> StoredObject:
        with self.engine.begin() as conn:
            version = next_resource_version(conn)
            if conn.execute(select(self.table.c.name).where(self.table.c.name == obj.name)).first() is not None:
                raise AlreadyExists(self.kind, obj.name)
            stored = StoredObject(
                name=obj.name,
                uid=str(uuid.uuid4()),
                resource_version=version,
                generation=1,
                created=now,
                updated=now,
                labels=obj.labels,
                annotations=obj.annotations,
                spec=obj.spec.to_dict(),
            )
            conn.execute(insert(self.table).values(**_row_values(stored)))
            _record_change(conn, self.kind, "ADDED", stored)
            if dry_run:
                raise _RolledBack(stored)
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
        """The store's current resourceVersion (of both kinds: the counter is global)."""
        return current_resource_version(self.reader)

    def replace(self, *, obj: ObjectIn, dry_run: bool = False) -> StoredObject:
        """Replace labels, annotations and spec. With ``obj.resource_version`` (and ``obj.uid``) the write
        happens only if the object is still at that version (that incarnation), else ``Conflict``; without
        them, the latest wins."""
        try:
            return self._replace(obj, dry_run=dry_run)
        except _RolledBack as done:
            return done.stored

    def _replace(self, obj: ObjectIn, *, dry_run: bool) -> StoredObject:
        with self.engine.begin() as conn:
            version = next_resource_version(conn)
            row = conn.execute(select(self.table).where(self.table.c.name == obj.name)).first()
            if row is None:
                raise NotFound(self.kind, obj.name)
            current = _stored(row)
            self._check_preconditions(current, resource_version=obj.resource_version, uid=obj.uid)
            spec = obj.spec.to_dict()
            changed = spec != current.spec
            new = replace(
                current,
                resource_version=version,
                generation=current.generation + (1 if changed else 0),
                updated=self.clock() if changed else current.updated,
                labels=obj.labels,
                annotations=obj.annotations,
                spec=spec,
            )
            conn.execute(
                update(self.table)
                .where(self.table.c.name == obj.name)
                .values(
                    resource_version=new.resource_version,
                    generation=new.generation,
                    updated=new.updated,
                    labels=new.labels,
                    annotations=new.annotations,
                    spec=new.spec,
                )
            )
            _record_change(conn, self.kind, "MODIFIED", new)
            if dry_run:
                raise _RolledBack(new)
        return new

    def delete(
        self, name: str, *, resource_version: int | None = None, uid: str | None = None, dry_run: bool = False
    ) -> StoredObject | None:
        """Delete ``name`` (if still at ``resource_version`` / of ``uid`` when given); the object as it was,
        at the deletion's resourceVersion, or None when there is none."""
        try:
            with self.engine.begin() as conn:
                version = next_resource_version(conn)
                row = conn.execute(select(self.table).where(self.table.c.name == name)).first()
                if row is None:
                    raise NotFound(self.kind, name)  # rolls the version back
                current = _stored(row)
                self._check_preconditions(current, resource_version=resource_version, uid=uid)
                if self.kind == GLOBAL_ALERT:
                    conn.execute(delete(STATUS_TABLE).where(STATUS_TABLE.c.name == name))
                conn.execute(delete(self.table).where(self.table.c.name == name))
                gone = replace(current, resource_version=version)
                _record_change(conn, self.kind, "DELETED", gone)
                if dry_run:
                    raise _RolledBack(gone)
        except NotFound:
            return None
        except _RolledBack as done:
            return done.stored
        return gone

    def _check_preconditions(self, current: StoredObject, *, resource_version: int | None, uid: str | None) -> None:
        if uid is not None and uid != current.uid:
            raise UidConflict(self.kind, current.name, uid, current.uid)
        if resource_version is not None and resource_version != current.resource_version:
            raise Conflict(self.kind, current.name, resource_version, current.resource_version)

    def changes(self, *, after: int, limit: int) -> tuple[list[Change], int]:
        """Changes of this kind with a resourceVersion above ``after`` (oldest first, at most ``limit``),
        and the version they were read at; ``Expired`` when ``after`` is older than the kept window."""
        with self.reader.connect() as conn:
            return read_changes(conn, self.kind, after=after, limit=limit)

    def statuses(self, names: list[str]) -> dict[str, AlertStatus]:
        """Status of the given GlobalAlerts (only those the scheduler wrote)."""
        if not names:
            return {}
        with self.reader.connect() as conn:
            return read_statuses(conn, names)


@dataclass(frozen=True)
class Change:
    """One row of the change log: ``type`` is ADDED, MODIFIED or DELETED; ``object`` as rendered then."""

    resource_version: int
    type: str
    name: str
    object: dict[str, Any]


def read_changes(conn: Connection, kind: Kind, *, after: int, limit: int) -> tuple[list[Change], int]:
    """The change log of ``kind`` after ``after`` (see ``ObjectStore.changes``)."""
    counter = conn.execute(select(VERSIONS_TABLE).where(VERSIONS_TABLE.c.id == 1)).first()
    current, compacted = (int(counter.current), int(counter.compacted)) if counter else (0, 0)
    if after < compacted:
        raise Expired(after, compacted)
    rows = conn.execute(
        select(CHANGES_TABLE)
        .where(CHANGES_TABLE.c.resource_version > after)
        .where(CHANGES_TABLE.c.resource_version <= current)
        .where(CHANGES_TABLE.c.kind == kind.kind)
        .order_by(CHANGES_TABLE.c.resource_version)
        .limit(limit)
    ).all()
    changes = [Change(int(r.resource_version), r.type, r.name, dict(r.object)) for r in rows]
    read_at = changes[-1].resource_version if len(changes) == limit else current
    return changes, read_at


def read_statuses(conn: Connection, names: list[str]) -> dict[str, AlertStatus]:
    """The stored status of those of ``names`` that have one."""
    if len(names) > 500:
        rows = conn.execute(select(STATUS_TABLE)).all()
    else:
        rows = conn.execute(select(STATUS_TABLE).where(STATUS_TABLE.c.name.in_(names))).all()
    wanted: set[str] = set(names)
    return {r.name: _status(r) for r in rows if r.name in wanted}


def next_resource_version(conn: Connection) -> int:
    """Draw the next global resourceVersion; must be the transaction's first statement (see ObjectStore)."""
    bumped = conn.execute(
        update(VERSIONS_TABLE).where(VERSIONS_TABLE.c.id == 1).values(current=VERSIONS_TABLE.c.current + 1)
    )
    if bumped.rowcount != 1:  # tables made by metadata.create_all, not by the migration
        highest = max(
            int(conn.execute(select(func.max(t.c.resource_version))).scalar() or 0) for t in OBJECT_TABLES.values()
        )
        conn.execute(insert(VERSIONS_TABLE).values(id=1, current=highest + 1, compacted=highest))
    return int(conn.execute(select(VERSIONS_TABLE.c.current).where(VERSIONS_TABLE.c.id == 1)).scalar_one())


def current_resource_version(engine: Engine) -> int:
    with engine.connect() as conn:
        value = conn.execute(select(VERSIONS_TABLE.c.current).where(VERSIONS_TABLE.c.id == 1)).scalar()
    return int(value or 0)


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
            return self.read_status(conn, name)

    def write_status(self, name: str, status: AlertStatus) -> None:
        for _ in range(_PUT_RETRIES):
            try:
                with self.engine.begin() as conn:
                    self.put_status(conn, name, status)
                return
            except IntegrityError:
                # PostgreSQL: the alert was deleted between the select and the insert (its status goes with
                # it), or another writer inserted the row first (updated on the next attempt).
                continue

    # ``evaluator.ports.StatusInTransaction``: the scheduler writes a run's status in the run's transaction.
    def read_status(self, conn: Connection, name: str) -> AlertStatus | None:
        row = conn.execute(select(STATUS_TABLE).where(STATUS_TABLE.c.name == name)).first()
        return None if row is None else _status(row)

    def put_status(self, conn: Connection, name: str, status: AlertStatus) -> None:
        values = _status_values(status)
        if conn.execute(update(STATUS_TABLE).where(STATUS_TABLE.c.name == name).values(**values)).rowcount == 1:
            return
        # First status of this alert: one upsert of a row selected from the alert itself, so nothing is
        # inserted for an alert deleted meanwhile and a concurrent first write is an update, not an error.
        upsert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        columns = list(values)
        source = select(self.alerts.c.name, *[literal(values[c], type_=STATUS_TABLE.c[c].type) for c in columns]).where(
            self.alerts.c.name == name
        )
        statement = upsert(STATUS_TABLE).from_select(["name", *columns], source)
        conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


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
