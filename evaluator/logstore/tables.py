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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from evaluator.db import metadata
from evaluator.query.errors import QueryError
from evaluator.query.records import IPAddress, raw_values, stored_value
from evaluator.query.schema import DATASETS, FIELDS, LABEL_PREFIXES, TIME_FIELD, FieldSpec, FieldType, field, lookup

IP_KEY_LENGTH = 33
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


def _main_table(dataset: str) -> Table:
    columns: list[Column[Any]] = [Column("id", _ID, primary_key=True, autoincrement=True)]
    for spec in FIELDS[dataset].values():
        if not spec.multi_valued:
            columns.extend(_scalar_column(spec))
    columns.append(Column("record", JSON, nullable=False))
    table = Table(f"logstore_{dataset}", metadata, *columns)
    Index(None, table.c[column_name(TIME_FIELD[dataset])])
    return table


def _values_table(dataset: str, main: Table) -> Table:
    table = Table(
        f"logstore_{dataset}_values",
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("record_id", _ID, ForeignKey(main.c.id, ondelete="CASCADE"), nullable=False),
        Column("key", Text, nullable=False),
        Column("value", Text, nullable=False),
        Column("ip_key", _IP_KEY),
    )
    Index(None, table.c.record_id, table.c.key)
    Index(None, table.c.key, table.c.ip_key)
    return table


_MAIN = {dataset: _main_table(dataset) for dataset in DATASETS}
_VALUES = {dataset: _values_table(dataset, _MAIN[dataset]) for dataset in DATASETS}


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


def record_to_rows(dataset: str, record: Mapping[str, Any], *, index: int = 0) -> RecordRows:
    """Validate ``record`` and map it to rows; raises RecordInvalid naming the field."""
    _check(dataset)
    if not isinstance(record, Mapping):
        raise RecordInvalid(index=index, field="", value=record, reason="a log record must be a JSON object")
    _check_json(record, index)
    time_key = TIME_FIELD[dataset]
    row: dict[str, Any] = {"record": dict(record)}
    values: list[dict[str, Any]] = []
    for spec in FIELDS[dataset].values():
        if spec.multi_valued:
            values.extend(_value_rows(spec, record, index))
            continue
        found = raw_values(spec, record)
        if len(found) > 1:
            raise RecordInvalid(index=index, field=spec.key, value=found, reason="expected one value, found a list")
        stored = _stored(spec, found[0], index) if found else None
        name = column_name(spec.key)
        if spec.type is FieldType.IP:
            row[name] = None if stored is None else str(stored)
            row[f"{name}_ipkey"] = None if stored is None else ip_key(stored)
        else:
            row[name] = stored
    if row[column_name(time_key)] is None:
        raise RecordInvalid(
            index=index,
            field=time_key,
            value=None,
            reason=f"missing; every {dataset} record needs its time (RFC 3339 or epoch seconds)",
        )
    for prefix, (path, _extra) in LABEL_PREFIXES[dataset].items():
        holder = FieldSpec(prefix, FieldType.STRING, path)
        for labels in raw_values(holder, record):
            if not isinstance(labels, Mapping):
                raise RecordInvalid(
                    index=index, field=prefix.rstrip("."), value=labels, reason="expected an object of labels"
                )
            for name, value in labels.items():
                label_spec = lookup(dataset, f"{prefix}{name}")
                if label_spec is not None and value is not None:
                    values.append(_value_row(label_spec, _stored(label_spec, value, index)))
    return RecordRows(row, _dedupe(values))


def _dedupe(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for value in values:
        identity = (value["key"], value["value"])
        if identity not in seen:
            seen.add(identity)
            out.append(value)
    return out


def _stored(spec: FieldSpec, value: Any, index: int) -> Any:
    try:
        return stored_value(spec, value)
    except ValueError as error:
        raise RecordInvalid(index=index, field=spec.key, value=value, reason=str(error)) from None


def _value_rows(spec: FieldSpec, record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    return [_value_row(spec, _stored(spec, raw, index)) for raw in raw_values(spec, record)]


def _value_row(spec: FieldSpec, stored: Any) -> dict[str, Any]:
    ip = ip_key(stored) if spec.type is FieldType.IP else None
    return {"key": spec.key, "value": str(stored), "ip_key": ip}


def _check_json(record: Mapping[str, Any], index: int) -> None:
    try:
        text = json.dumps(record, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError) as error:
        raise RecordInvalid(index=index, field="", value="<record>", reason=f"not storable as JSON: {error}") from None
    if "\\u0000" in text:
        raise RecordInvalid(index=index, field="", value="<record>", reason="contains a NUL character")


def insert_records(conn: Connection, dataset: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Validate and insert ``records`` (all or none: the first bad one raises RecordInvalid)."""
    mapped = [record_to_rows(dataset, record, index=index) for index, record in enumerate(records)]
    if not mapped:
        return 0
    main, values = _MAIN[dataset], _VALUES[dataset]
    result = conn.execute(
        main.insert().returning(main.c.id, sort_by_parameter_order=True), [rows.row for rows in mapped]
    )
    ids = [row[0] for row in result]
    value_rows = [
        {**value, "record_id": record_id} for record_id, rows in zip(ids, mapped, strict=True) for value in rows.values
    ]
    if value_rows:
        conn.execute(values.insert(), value_rows)
    return len(mapped)
