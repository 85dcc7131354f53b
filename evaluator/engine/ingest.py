"""Bulk ingest into the embedded log store: parse a request's documents, validate each, store them once.

Two request shapes come in:

* Elasticsearch's ``_bulk`` (``parse_es_bulk``): action lines (``index``/``create``; ``update`` and
  ``delete`` are answered per item) each followed by a document; the data set comes from ``_index``.
* policywatch's own ``/datasets/{d}/_bulk`` (``parse_records``): NDJSON (Elasticsearch action lines
  allowed and honoured), a JSON array of records, a kube-apiserver audit ``EventList`` or one object.

``store_documents`` writes every valid document of a request in one transaction: the request is stored
whole (minus the documents reported invalid) or, when the store fails, not at all. Each document has an
ingest key, its ``_id`` or a hash of its content, so a retried request stores nothing twice.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from evaluator.engine.ingest_gc import collector_paused
from evaluator.engine.ingest_response import Report, es_bulk_response
from evaluator.logstore import Keyed, Outcome, RecordInvalid, write_keyed
from evaluator.logstore.mapper import FlatRows, mapper
from evaluator.logstore.tables import MAX_DOCUMENT_ID_BYTES, check_record_text
from evaluator.logstore.writer import lock_for_write
from evaluator.vocabulary import DATASETS

ACTIONS = ("index", "create", "update", "delete")
INDEX_CACHE_ENTRIES = 1_024
_UNSEEN = object()
INTEGRITY_RETRIES = 3
# Calico Enterprise's index names (fluentd writes tigera_secure_ee_flows.<cluster>.<date>, ...) and the
# data sets' own names; POLICYWATCH_INGEST_INDICES replaces this list.
DEFAULT_INDEX_PATTERNS = (
    "tigera_secure_ee_flows*=flows,tigera_secure_ee_dns*=dns,tigera_secure_ee_audit*=audit,"
    "flows*=flows,dns*=dns,audit*=audit"
)


class BulkMalformed(ValueError):
    """The request cannot be read as a whole (Elasticsearch answers these 400, storing nothing)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # as it was made: it crosses back from ingest worker processes
        return BulkMalformed, (self.line, self.reason)


@dataclass(frozen=True, slots=True)
class DocError:
    """Why one document was not stored, in Elasticsearch's terms (``type``, ``status``) and ours (``field``)."""

    status: int
    type: str
    reason: str
    field: str = ""


@dataclass(slots=True)
class Document:
    """One document of a request: where it was, what it asks, and (once stored) what became of it."""

    line: int  # 1-based line of the body where the document starts
    item: int | None = None  # 1-based position in a JSON array or EventList body
    action: str = "index"
    index: str | None = None
    doc_id: str | None = None
    dataset: str | None = None
    record: Any = None
    # The document's line as received (NDJSON): stored as it is and hashed, so it is not serialised again.
    source: bytes | None = None
    text: str = ""  # what is stored: the line as received, or canonical JSON (keys sorted) of an array item
    error: DocError | None = None
    rows: FlatRows | None = None
    outcome: Outcome | None = None

    _key: str | None = None

    @property
    def key(self) -> str:
        """The ingest key: ``id:`` + the _id, or ``hash:`` + a 128-bit BLAKE2b of the line as received
        (NDJSON) or of the canonical JSON (an item of a JSON array or EventList)."""
        if self._key is None:
            if self.doc_id is not None:
                self._key = f"id:{self.doc_id}"
            else:
                data = self.source if self.source is not None else self.text.encode()
                self._key = "hash:" + hashlib.blake2b(data, digest_size=16).hexdigest()
        return self._key

    @property
    def response_id(self) -> str:
        return self.doc_id if self.doc_id is not None else self.key.removeprefix("hash:")

    def fail(self, status: int, kind: str, reason: str, field: str = "") -> None:
        self.error = DocError(status, kind, reason, field)


class IndexPatterns:
    """Elasticsearch index name -> data set, by ``GLOB=DATASET`` patterns (first match wins)."""

    def __init__(self, spec: str = DEFAULT_INDEX_PATTERNS) -> None:
        self.patterns: list[tuple[str, str]] = []
        self._seen: dict[str, str | None] = {}  # index name -> data set, as the patterns map it
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            glob, sep, dataset = part.partition("=")
            if not sep or not glob.strip() or dataset.strip() not in DATASETS:
                raise ValueError(
                    f"index pattern {part!r}: expected GLOB=DATASET with DATASET one of {', '.join(DATASETS)}, "
                    "e.g. tigera_secure_ee_flows*=flows"
                )
            self.patterns.append((glob.strip(), dataset.strip()))

    def dataset(self, index: str) -> str | None:
        known = self._seen.get(index, _UNSEEN)
        if known is not _UNSEEN:
            return known  # type: ignore[return-value]
        found = next((dataset for glob, dataset in self.patterns if fnmatch.fnmatchcase(index, glob)), None)
        if len(self._seen) >= INDEX_CACHE_ENTRIES:  # index names come from clients: bounded
            self._seen.clear()
        self._seen[index] = found
        return found

    def describe(self) -> str:
        return ", ".join(f"{glob} -> {dataset}" for glob, dataset in self.patterns)


def _lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(body.split(b"\n"), start=1):
        line = line.strip()
        if line:
            yield number, line


def _loads(data: bytes) -> Any:
    """JSON of one line; ValueError carries a reason a person can act on."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    try:  # orjson refuses what JSON does not allow; the standard library says where, or what it was
        json.loads(data)
    except RecursionError:
        raise ValueError("not JSON: nested too deeply to be a log record") from None
    except ValueError as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValueError(f"not JSON: {message}{where}") from None
    raise ValueError(f"not storable as JSON (NaN, Infinity or a lone surrogate?): {reason}")


def _action(value: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(value, dict) and len(value) == 1:
        action, meta = next(iter(value.items()))
        if action in ACTIONS and isinstance(meta, dict):
            return action, meta
    return None


def _document_id(document: Document, meta: dict[str, Any]) -> None:
    raw = meta.get("_id")
    if raw is None:
        return
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        document.fail(400, "illegal_argument_exception", f"_id must be a string, not {raw!r}")
        return
    text = str(raw)
    if not text or len(text.encode()) > MAX_DOCUMENT_ID_BYTES:
        document.fail(
            400,
            "illegal_argument_exception",
            f"_id must be 1 to {MAX_DOCUMENT_ID_BYTES} bytes long, not {len(text.encode())}",
        )
        return
    document.doc_id = text


def parse_es_bulk(body: bytes, *, default_index: str | None, patterns: IndexPatterns) -> list[Document]:
    """Documents of an Elasticsearch ``_bulk`` body; BulkMalformed when an action line is unreadable."""
    documents: list[Document] = []
    lines = iter(_lines(body))
    last: tuple[bytes, tuple[str, dict[str, Any]]] | None = None  # shippers repeat one action line
    for number, line in lines:
        if last is not None and line == last[0]:
            found: tuple[str, dict[str, Any]] | None = last[1]  # (its meta is only read)
        else:
            try:
                parsed = _loads(line)
            except ValueError as exc:
                raise BulkMalformed(number, f"malformed action/metadata line: {exc}") from None
            found = _action(parsed)
            if found is not None:
                last = line, found
        if found is None:
            raise BulkMalformed(
                number,
                "malformed action/metadata line: expected one of " + ", ".join(f'{{"{a}": {{...}}}}' for a in ACTIONS),
            )
        action, meta = found
        index = meta.get("_index", default_index)
        document = Document(line=number, action=action, index=index if isinstance(index, str) else None)
        _document_id(document, meta)
        documents.append(document)
        if action != "delete":
            source = next(lines, None)
            if source is None:
                raise BulkMalformed(number, f"the {action} action on line {number} has no document line after it")
            _parse_source(document, source[1])
        if document.error is not None:
            continue
        if action in ("update", "delete"):
            document.fail(
                400,
                "illegal_argument_exception",
                f"{action} is not supported: log records are only added; use index or create",
            )
        elif document.index is None:
            document.fail(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        else:
            document.dataset = patterns.dataset(document.index)
            if document.dataset is None:
                document.fail(
                    404,
                    "index_not_found_exception",
                    f"no such index [{document.index}]: policywatch stores {patterns.describe()} "
                    "(POLICYWATCH_INGEST_INDICES)",
                )
            else:
                _validate_one(document)
    return documents


def _parse_source(document: Document, source: bytes) -> None:
    try:
        document.record = _loads(source)
    except ValueError as exc:
        document.fail(400, "mapper_parsing_exception", f"failed to parse: {exc}")
    else:
        document.source = source


def parse_records(body: bytes, dataset: str) -> list[Document]:
    """Documents of a ``/datasets/{dataset}/_bulk`` body: NDJSON, a JSON array, an audit EventList, one object."""
    whole = _whole_body(body)
    if whole is not None:
        return _whole_documents(whole, dataset)
    documents: list[Document] = []
    pending: tuple[str, dict[str, Any]] | None = None
    for number, line in _lines(body):
        document = Document(line=number, index=dataset, dataset=dataset)
        try:
            record = _loads(line)
        except ValueError as exc:
            document.fail(400, "mapper_parsing_exception", str(exc))
            documents.append(document)
            pending = None
            continue
        action = _action(record)
        if action is not None and pending is None:
            pending = action
            continue
        if pending is not None:
            document.action = pending[0]
            _document_id(document, pending[1])
            pending = None
        if isinstance(record, list):
            document.fail(
                400, "mapper_parsing_exception", "a log record must be a JSON object (an array only as the whole body)"
            )
        document.record = record
        document.source = line
        _validate_one(document)
        documents.append(document)
    return documents


def _whole_body(body: bytes) -> Any:
    """The body as one JSON value, or None when it is not one (NDJSON of several lines, or bad)."""
    start = body.lstrip()[:1]
    if start not in (b"[", b"{"):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _whole_documents(value: Any, dataset: str) -> list[Document]:
    items: list[Any]
    if isinstance(value, dict) and value.get("kind") == "EventList":
        if dataset != "audit":
            document = Document(line=1, index=dataset, dataset=dataset)
            document.fail(400, "mapper_parsing_exception", f"a Kubernetes audit EventList is not {dataset} records")
            return [document]
        items = value.get("items") or []
        if not isinstance(items, list):
            document = Document(line=1, index=dataset, dataset=dataset)
            document.fail(400, "mapper_parsing_exception", "EventList items must be a list", "items")
            return [document]
    elif isinstance(value, list):
        items = value
    else:
        if _action(value) is not None:
            return []
        return [Document(line=1, index=dataset, dataset=dataset, record=value)]
    return [
        Document(line=1, item=position, index=dataset, dataset=dataset, record=record)
        for position, record in enumerate(items, start=1)
    ]


def validate(documents: Sequence[Document]) -> None:
    """Map each readable document to its rows; the invalid ones get their error."""
    for document in documents:
        if document.rows is None:
            _validate_one(document)


def _validate_one(document: Document) -> None:
    """Map one document (if readable and not mapped yet). The parsers call this as soon as a document's
    data set is known, so that its parsed record is freed at once: thousands of records alive together
    would make Python's cyclic garbage collector scan them again and again."""
    if document.error is not None or document.dataset is None or document.rows is not None:
        return
    record = document.record
    if type(record) is not dict:
        document.fail(400, "mapper_parsing_exception", "a log record must be a JSON object")
        return
    try:
        if document.source is not None:  # valid JSON as orjson parsed it: UTF-8, no NaN, no lone surrogate
            document.text = document.source.decode()
        else:
            document.text = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
        check_record_text(document.text, 0)
        scalars, values = mapper(document.dataset)(record, 0)
        document.rows = FlatRows(scalars, values, document.text)
        document.record = None  # its text is stored
    except RecordInvalid as exc:
        document.fail(400, "mapper_parsing_exception", exc.reason, exc.field)
    except (TypeError, orjson.JSONEncodeError) as exc:
        document.fail(400, "mapper_parsing_exception", f"not storable as JSON: {exc}")


def store_documents(
    engine: sa.Engine,
    documents: Sequence[Document],
    *,
    lock_timeout: float | None = None,
) -> None:
    """Store the valid documents in one transaction and set each one's outcome; nothing is stored on error.

    ``lock_timeout`` (seconds) bounds the wait for a lock held by another writer, so a busy store
    answers promptly (then ``sqlalchemy.exc.OperationalError``) rather than after the driver's default.
    A unique-key race with a concurrent request is retried: the second attempt sees the first one's keys.
    """
    valid = [d for d in documents if d.rows is not None]
    if not valid:
        return
    by_dataset: dict[str, list[Document]] = {}
    for document in valid:
        assert document.dataset is not None
        by_dataset.setdefault(document.dataset, []).append(document)
    for attempt in range(1, INTEGRITY_RETRIES + 1):
        try:
            with engine.connect() as conn:
                relaxed = _commit_without_fsync(conn)
                try:
                    with conn.begin():
                        restore = _bound_lock_wait(conn, lock_timeout)
                        try:
                            lock_for_write(conn)
                            outcomes: dict[int, Outcome] = {}
                            for dataset, group in sorted(by_dataset.items()):
                                keyed = [
                                    Keyed(d.rows, d.key, replace=d.action == "index" and d.doc_id is not None)  # type: ignore[arg-type]
                                    for d in group
                                ]
                                for document, outcome in zip(group, write_keyed(conn, dataset, keyed), strict=True):
                                    outcomes[id(document)] = outcome
                        finally:
                            restore()
                finally:
                    relaxed()
        except sa.exc.IntegrityError:
            if attempt == INTEGRITY_RETRIES:
                raise
            continue
        for document in valid:
            document.outcome = outcomes[id(document)]
            if document.outcome is Outcome.CONFLICT:
                document.fail(
                    409,
                    "version_conflict_engine_exception",
                    f"[{document.doc_id}]: version conflict, document already exists (current version [1])",
                )
        return


def _commit_without_fsync(conn: sa.Connection) -> Callable[[], None]:
    """SQLite in WAL mode: ``synchronous=NORMAL`` for this connection's ingest commit, restored afterwards.

    The commit then writes the transaction to the WAL file without an fsync (the WAL is synced at
    checkpoints). A committed request survives a crash or kill of the process, so "2xx only if stored"
    holds against process crashes; an operating-system crash or power loss may roll back the last
    commits since the last checkpoint (never corrupting the database). Other writers keep their setting.
    """
    if conn.dialect.name != "sqlite":
        return lambda: None
    if str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower() != "wal":
        conn.commit()
        return lambda: None
    before = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
    conn.exec_driver_sql("PRAGMA synchronous = NORMAL")
    conn.commit()  # (no transaction is open: the pragmas began none); conn.begin() follows

    def restore() -> None:
        with contextlib.suppress(sa.exc.DBAPIError):
            conn.exec_driver_sql(f"PRAGMA synchronous = {before}")
            conn.commit()

    return restore


def _bound_lock_wait(conn: sa.Connection, seconds: float | None) -> Callable[[], None]:
    if seconds is None:
        return lambda: None
    millis = max(1, int(seconds * 1000))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {millis}")
        return lambda: None
    if conn.dialect.name == "sqlite":
        before = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {millis}")

        def restore() -> None:
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {before}")

        return restore
    return lambda: None


def store_busy(exc: BaseException) -> bool:
    """True when ``exc`` means another writer holds the store (retry soon: 429), not that it is down (503)."""
    if isinstance(exc, sa.exc.TimeoutError):  # the connection pool is exhausted
        return True
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(word in text for word in ("database is locked", "database is busy", "lock timeout", "deadlock"))


def ingest_records(engine: sa.Engine, dataset: str, body: bytes, *, lock_timeout: float | None = None) -> Report:
    """A ``/datasets/{dataset}/_bulk`` request: parse, validate, store in one transaction, report per line."""
    with collector_paused:
        documents = parse_records(body, dataset)
        validate(documents)
        store_documents(engine, documents, lock_timeout=lock_timeout)
        return Report.of(dataset, body, documents)


def ingest_es_bulk(
    engine: sa.Engine,
    body: bytes,
    *,
    default_index: str | None,
    patterns: IndexPatterns,
    lock_timeout: float | None = None,
) -> dict[str, Any]:
    """An Elasticsearch ``_bulk`` request, answered as Elasticsearch does; BulkMalformed stores nothing."""
    started = time.monotonic()
    with collector_paused:
        documents = parse_es_bulk(body, default_index=default_index, patterns=patterns)
        validate(documents)
        store_documents(engine, documents, lock_timeout=lock_timeout)
        return es_bulk_response(documents, started)
