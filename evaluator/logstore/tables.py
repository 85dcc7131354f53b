"""Tables of the embedded log store, and the mapping from log records to their rows.

Each data set has a main table (``logstore_<dataset>``: one column per single-valued key, the whole
record as JSON) and a values table (``logstore_<dataset>_values``: one row per value of a multi-valued
key: labels, policies, servers, rrsets, sourceIPs, user.groups, original_source_ips, and the
``*_labels.NAME`` keys). Dates are stored as epoch seconds (double precision); IP addresses as text
plus a fixed-width sortable key (``4`` + 8 hex digits or ``6`` + 32) so that a CIDR is a range.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

from evaluator.db import metadata
from evaluator.query.errors import QueryError
from evaluator.query.records import IPAddress, raw_values, stored_value
from evaluator.query.schema import DATASETS, FIELDS, LABEL_PREFIXES, TIME_FIELD, FieldSpec, FieldType, field, lookup

IP_KEY_LENGTH = 33
# Elasticsearch's limit on a document _id; the ingest key is "id:" + _id.
MAX_DOCUMENT_ID_BYTES = 512
INGEST_KEY_LENGTH = 4 + MAX_DOCUMENT_ID_BYTES
_ID = BigInteger().with_variant(Integer(), "sqlite")
# A fixed-width hex key orders bytewise only under the C collation on PostgreSQL.
_IP_KEY = String(IP_KEY_LENGTH).with_variant(String(IP_KEY_LENGTH, collation="C"), "postgresql")


def column_name(key: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", key.lower())


def ip_key(address: IPAddress) -> str:
    width = 8 if address.version == 4 else 32
    return f"{address.version}{int(address):0{width}x}"


def network_bounds(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[str, str]:
    return ip_key(network.network_address), ip_key(network.broadcast_address)


def _scalar_column(spec: FieldSpec) -> list[Column[Any]]:
    name = column_name(spec.key)
    if spec.type is FieldType.INT:
        return [Column(name, BigInteger)]
    if spec.type is FieldType.DATE:
        return [Column(name, Double)]
    if spec.type is FieldType.IP:
        return [Column(name, String(64)), Column(f"{name}_ipkey", _IP_KEY)]
    return [Column(name, Text)]


class RecordText(str):
    """A record already serialised as JSON text, stored as it is."""

    __slots__ = ()


class RecordJSON(TypeDecorator[Any]):
    """The JSON column of the whole record: a RecordText is stored without serialising it again."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        fallback = self.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        psycopg_json = getattr(dialect, "_psycopg_Json", None)  # psycopg 3 binds JSON through its adapter

        def process(value: Any) -> Any:
            if isinstance(value, RecordText):
                return str(value) if psycopg_json is None else psycopg_json(str(value), dumps=_as_is)
            return fallback(value) if fallback is not None else value

        return process


def _as_is(text: Any) -> str:
    return str(text)


def _main_table(dataset: str) -> Table:
    columns: list[Column[Any]] = [Column("id", _ID, primary_key=True, autoincrement=True)]
    for spec in FIELDS[dataset].values():
        if not spec.multi_valued:
            columns.extend(_scalar_column(spec))
    columns.append(Column("record", RecordJSON, nullable=False))
    # Identity for ingest retries (revision 0011): "id:" + the document's _id, else a 64-bit hash of its
    # content, unique together with the record's time in the time index (no index of its own to write).
    columns.append(Column("ingest_key", String(INGEST_KEY_LENGTH), nullable=True))
    columns.append(Column("ingest_hash", BigInteger, nullable=True))
    table = Table(f"logstore_{dataset}", metadata, *columns)
    Index(None, table.c[column_name(TIME_FIELD[dataset])], table.c.ingest_hash, unique=True)
    with_id = table.c.ingest_key.is_not(None)
    Index(None, table.c.ingest_key, unique=True, sqlite_where=with_id, postgresql_where=with_id)
    return table


def _values_table(dataset: str) -> Table:
    table = Table(
        f"logstore_{dataset}_values",
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        # No foreign key (revision 0010): every delete of records removes their values itself.
        Column("record_id", _ID, nullable=False),
        Column("key", Text, nullable=False),
        Column("value", Text, nullable=False),
        Column("ip_key", _IP_KEY),
    )
    Index(None, table.c.record_id, table.c.key)
    return table


_MAIN = {dataset: _main_table(dataset) for dataset in DATASETS}
_VALUES = {dataset: _values_table(dataset) for dataset in DATASETS}


def _check(dataset: str) -> str:
    if dataset not in _MAIN:
        raise QueryError(f"unknown data set {dataset!r}", expected=DATASETS)
    return dataset


def table_for(dataset: str) -> Table:
    """The main table of ``dataset``."""
    return _MAIN[_check(dataset)]


def values_table_for(dataset: str) -> Table:
    """The table of multi-valued keys' values of ``dataset``."""
    return _VALUES[_check(dataset)]


def column_for(dataset: str, key: str) -> Column[Any]:
    """The column of a single-valued key (for GROUP BY and metrics); IP keys give their text column."""
    spec = field(_check(dataset), key)
    if spec.multi_valued or spec.dynamic:
        raise QueryError(f"key {key!r} holds many values per record in data set {dataset}; it has no column")
    return _MAIN[dataset].c[column_name(key)]


def ip_key_column_for(dataset: str, key: str) -> Column[Any]:
    return _MAIN[_check(dataset)].c[f"{column_name(key)}_ipkey"]


class RecordInvalid(ValueError):
    """A log record that cannot be stored: which record (0-based), which field, its value, and why."""

    def __init__(self, *, index: int, field: str, value: Any, reason: str) -> None:
        self.index = index
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"record {index}: field {field!r} = {shown}: {reason}")


@dataclass(frozen=True, slots=True)
class RecordRows:
    """The main-table row of one record and the rows of its multi-valued keys (without ids)."""

    row: dict[str, Any]
    values: list[dict[str, Any]] = dataclass_field(default_factory=list)
    text: str = ""  # the record as JSON, as the ``record`` column stores it


# Epoch seconds sent as a string ("1709287200", "1709287200.5"), and a number this large is epoch
# milliseconds (10**11 seconds is the year 5138; 10**11 ms is 1973), as Elasticsearch's epoch_millis.
_EPOCH_TEXT = re.compile(r"\s*[+-]?[0-9]+(?:\.[0-9]*)?\s*")
EPOCH_MILLIS_FROM = 10**11


def epoch_date(value: Any) -> Any:
    """A date field's value with epoch-seconds strings and epoch milliseconds read as epoch seconds."""
    if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value):
        value = float(value) if "." in value else int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= EPOCH_MILLIS_FROM:
        return value / 1000
    return value


_CACHE_ENTRIES = 4_096
Converter = Callable[[Any, int], Any]


def _stored_form(spec: FieldSpec, value: Any) -> Any:
    if spec.type is FieldType.IP and isinstance(value, str) and value.strip() == "-":
        return _NO_IP  # Calico's aggregated flow logs write "-" for an address aggregated away
    if spec.type is FieldType.IP and isinstance(value, str) and ":" not in value:
        try:  # IPv4 in C; the same canonical text and key as through ipaddress
            packed = socket.inet_pton(socket.AF_INET, value.strip())
        except OSError:
            pass
        else:
            return socket.inet_ntop(socket.AF_INET, packed), "4" + packed.hex()
    if spec.type is FieldType.DATE:
        value = epoch_date(value)
    stored = stored_value(spec, value)
    if spec.type is FieldType.IP:
        return str(stored), ip_key(stored)  # type: ignore[arg-type]
    return stored


class _Field:
    """One key of a data set as the mapping uses it: where it is, its column, and its converter's cache.

    Stored forms are cached per value because the records of a batch repeat their dates, addresses and
    names; the cache key keeps 1, 1.0 and True apart (strings are their own key).
    """

    __slots__ = ("cache", "first", "ipkey", "maximum", "minimum", "name", "plain_int", "spec")

    def __init__(self, spec: FieldSpec) -> None:
        self.spec = spec
        self.name = column_name(spec.key)
        self.first = spec.path[0] if len(spec.path) == 1 else None  # a top-level key: no path walk
        self.ipkey = f"{self.name}_ipkey" if spec.type is FieldType.IP else None
        self.plain_int = spec.type is FieldType.INT
        self.minimum, self.maximum = spec.minimum, spec.maximum
        self.cache: dict[Any, Any] = {}

    def convert(self, value: Any, index: int) -> Any:
        """The stored form of one value (an IP: its text and key); RecordInvalid names the field."""
        kind = type(value)
        if self.plain_int and kind is int and self.minimum <= value <= self.maximum:
            return value
        key = value if kind is str else (kind, value) if kind is int or kind is float else None
        if key is not None:
            hit = self.cache.get(key, _MISSING)
            if hit is not _MISSING:
                return hit
        return self.fresh(value, index, key)

    def fresh(self, value: Any, index: int, key: Any) -> Any:
        """``convert`` of a value whose cache ``key`` (as ``convert`` makes it, or None) is not cached."""
        try:
            result = _stored_form(self.spec, value)
        except ValueError as error:
            raise RecordInvalid(index=index, field=self.spec.key, value=value, reason=str(error)) from None
        if key is not None:
            if len(self.cache) >= _CACHE_ENTRIES:
                self.cache.clear()
            self.cache[key] = result
        return result


_MISSING = object()
_NO_IP = (None, None)


@lru_cache(maxsize=1_024)
def _label_converter(dataset: str, key: str) -> Converter | None:
    spec = lookup(dataset, key)
    return None if spec is None else _Field(spec).convert


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a record of one data set maps to rows, worked out once per data set."""

    scalars: tuple[_Field, ...]
    multi: tuple[_Field, ...]
    labels: tuple[tuple[str, FieldSpec], ...]  # prefix, a holder spec walking to the labels object
    time_column: str


def _plan(dataset: str) -> _Plan:
    scalars = tuple(_Field(spec) for spec in FIELDS[dataset].values() if not spec.multi_valued)
    multi = tuple(_Field(spec) for spec in FIELDS[dataset].values() if spec.multi_valued)
    labels = tuple(
        (prefix, FieldSpec(prefix, FieldType.STRING, path))
        for prefix, (path, _extra) in LABEL_PREFIXES[dataset].items()
    )
    return _Plan(scalars, multi, labels, column_name(TIME_FIELD[dataset]))


_PLANS = {dataset: _plan(dataset) for dataset in DATASETS}


def _one(slot: _Field, found: list[Any], index: int) -> Any:
    if len(found) > 1:
        raise RecordInvalid(index=index, field=slot.spec.key, value=found, reason="expected one value, found a list")
    return slot.convert(found[0], index)


def _found(spec: FieldSpec, record: Mapping[str, Any]) -> list[Any]:
    """``raw_values(spec, record)``, without its general walk in the common cases: a top-level key, or a
    key of a top-level object (``dest_labels.labels``, ``policies.all_policies``)."""
    path = spec.path
    holder: Any = record
    if len(path) == 2:
        holder = record.get(path[0])
        if holder is None:
            return []
        if type(holder) is not dict:
            return raw_values(spec, record)
    elif len(path) != 1:
        return raw_values(spec, record)
    value = holder.get(path[-1])
    if value is None:
        return []
    if type(value) is list:
        return [item for item in value if item is not None]
    return [value]


def record_to_rows(dataset: str, record: Mapping[str, Any], *, index: int = 0, text: str | None = None) -> RecordRows:
    """Validate ``record`` and map it to rows; raises RecordInvalid naming the field.

    ``text`` is the record already serialised as JSON (by a parser that refuses NaN and lone
    surrogates); without it the record is checked and serialised here.
    """
    _check(dataset)
    if not isinstance(record, Mapping):
        raise RecordInvalid(index=index, field="", value=record, reason="a log record must be a JSON object")
    plan = _PLANS[dataset]
    text = text if text is not None else record_text(record, index)
    row: dict[str, Any] = {"record": record}
    get = record.get
    for slot in plan.scalars:
        if slot.first is not None:
            value = get(slot.first)
            if value is None:
                row[slot.name] = None
                if slot.ipkey is not None:
                    row[slot.ipkey] = None
                continue
            kind = type(value)
            if kind is str:  # the hot path: a cached stored form
                stored = slot.cache.get(value, _MISSING)
                if stored is _MISSING:
                    stored = slot.convert(value, index)
            elif kind is int and slot.plain_int and slot.minimum <= value <= slot.maximum:
                stored = value
            elif kind is list:
                found = [item for item in value if item is not None]
                stored = None if not found else _one(slot, found, index)
            else:
                stored = slot.convert(value, index)
        else:
            found = _found(slot.spec, record)
            stored = None if not found else _one(slot, found, index)
        if slot.ipkey is None:
            row[slot.name] = stored
        elif stored is None:
            row[slot.name] = row[slot.ipkey] = None
        else:
            row[slot.name], row[slot.ipkey] = stored
    if row[plan.time_column] is None:
        time_key = TIME_FIELD[dataset]
        raise RecordInvalid(
            index=index,
            field=time_key,
            value=None,
            reason=f"missing; every {dataset} record needs its time (RFC 3339, epoch seconds or epoch milliseconds)",
        )
    values: list[dict[str, Any]] = []
    for slot in plan.multi:
        for raw in _found(slot.spec, record):
            stored = slot.convert(raw, index)
            if stored is not _NO_IP:
                values.append(_value_row(slot.spec.key, slot.spec.type, stored))
    values.extend({"key": key, "value": value, "ip_key": None} for key, value in label_values(dataset, record, index))
    return RecordRows(row, _dedupe(values) if len(values) > 1 else values, text)


def label_values(dataset: str, record: Mapping[str, Any], index: int) -> Iterator[tuple[str, str]]:
    """The ``*_labels.NAME`` keys of ``record`` as (key, value text); RecordInvalid for labels that are no object."""
    for prefix, holder in _PLANS[dataset].labels:
        for labels in raw_values(holder, record):
            if not isinstance(labels, Mapping):
                raise RecordInvalid(
                    index=index, field=prefix.rstrip("."), value=labels, reason="expected an object of labels"
                )
            for name, value in labels.items():
                key = f"{prefix}{name}"
                convert = _label_converter(dataset, key)
                if convert is not None and value is not None:
                    yield key, str(convert(value, index))


def _dedupe(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for value in values:
        identity = (value["key"], value["value"])
        if identity not in seen:
            seen.add(identity)
            out.append(value)
    return out


def _value_row(key: str, kind: FieldType, stored: Any) -> dict[str, Any]:
    if kind is FieldType.IP:
        return {"key": key, "value": stored[0], "ip_key": stored[1]}
    return {"key": key, "value": str(stored), "ip_key": None}


def record_text(record: Mapping[str, Any], index: int) -> str:
    """``record`` as the JSON text the ``record`` column stores (compact, keys in the record's order);
    RecordInvalid when it is not storable (NaN, a lone surrogate, a NUL, not JSON)."""
    try:
        text = json.dumps(record, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
    except (TypeError, ValueError) as error:
        raise RecordInvalid(index=index, field="", value="<record>", reason=f"not storable as JSON: {error}") from None
    check_record_text(text, index)
    return text


def check_record_text(text: str, index: int) -> None:
    if "\\u0000" in text or "\x00" in text:
        raise RecordInvalid(index=index, field="", value="<record>", reason="contains a NUL character")
