"""Records to rows on the ingest path: one function per data set, compiled once from its schema.

``record_to_rows`` (tables.py) walks the data set's keys generically for every record; a bulk request
maps thousands of records of the same shape, so here the walk is generated as straight-line Python per
data set (the technique of ``dataclasses`` and ``namedtuple``): a local per key, the common value
types (a cached string, an integer in range) inline, anything else handed to the generic code of
``tables``. The result is what the writer binds: the main row as a tuple in column order and the
values rows as ``(key, value, ip_key)`` tuples. It is the only mapping that stores: ingest and
``writer.insert_records`` both use it; ``record_to_rows`` stays the reference (the tests check that both
agree on every record, valid or not) and the engine benchmarks' row generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from evaluator.logstore.tables import (
    _MISSING,
    _NO_IP,
    _PLANS,
    RecordInvalid,
    _Field,
    _found,
    _one,
    label_values,
    table_for,
)
from evaluator.query.schema import TIME_FIELD, FieldType

ValueRow = tuple[str, str, str | None]  # key, value (text), ip_key


@dataclass(frozen=True, slots=True)
class FlatRows:
    """One record as the writer binds it: scalar columns in ``scalar_columns(dataset)`` order, values rows,
    the record's JSON text."""

    scalars: tuple[Any, ...]
    values: list[ValueRow]
    text: str


Mapper = Callable[[Mapping[str, Any], int], tuple[tuple[Any, ...], list[ValueRow]]]


@cache
def scalar_columns(dataset: str) -> tuple[str, ...]:
    """The main table's columns a mapped row fills, in order (not ``id``, ``record`` and the ingest keys)."""
    return tuple(
        c.name for c in table_for(dataset).columns if c.name not in ("id", "record", "ingest_key", "ingest_hash")
    )


def _top_level(slot: _Field) -> Callable[[Any, int], Any]:
    """The stored form of a top-level key's value that is not None (the generic cases of record_to_rows)."""

    def stored(value: Any, index: int) -> Any:
        kind = type(value)
        if kind is str:
            hit = slot.cache.get(value, _MISSING)
            return slot.convert(value, index) if hit is _MISSING else hit
        if kind is int and slot.plain_int and slot.minimum <= value <= slot.maximum:
            return value
        if kind is list:
            found = [item for item in value if item is not None]
            return None if not found else _one(slot, found, index)
        return slot.convert(value, index)

    return stored


def _nested(slot: _Field) -> Callable[[Mapping[str, Any], int], Any]:
    def stored(record: Mapping[str, Any], index: int) -> Any:
        found = _found(slot.spec, record)
        return None if not found else _one(slot, found, index)

    return stored


def _multi(slot: _Field) -> Callable[[Mapping[str, Any], int, list[ValueRow]], None]:
    key, is_ip = slot.spec.key, slot.spec.type is FieldType.IP
    convert, cached = slot.convert, slot.cache

    def add(record: Mapping[str, Any], index: int, out: list[ValueRow]) -> None:
        for raw in _found(slot.spec, record):
            stored: Any = cached.get(raw, _MISSING) if type(raw) is str else _MISSING
            if stored is _MISSING:
                stored = convert(raw, index)
            if is_ip:
                if stored is not _NO_IP:
                    out.append((key, stored[0], stored[1]))
            else:
                out.append((key, str(stored), None))

    return add


def _inline_multi(n: int, slot: _Field, scope: dict[str, Any]) -> list[str]:
    """Code adding the values of a multi-valued key at ``a`` or ``a.b`` to ``values``: a list of strings
    inline (cached stored forms), anything else through ``_multi``."""
    path = slot.spec.path
    if len(path) > 2:
        return [f"    multi{n}(record, index, values)"]
    scope[f"mcache{n}"], scope[f"mone{n}"], scope["_NO_IP"] = slot.cache, _multi_one(slot), _NO_IP
    key = slot.spec.key
    if slot.spec.type is FieldType.IP:
        add = [
            f"                    if st is not _NO_IP: values.append(({key!r}, st[0], st[1]))",
        ]
    else:
        add = [f"                    values.append(({key!r}, st if type(st) is str else str(st), None))"]
    body = [
        "            for raw in lst:",
        "                if type(raw) is str:",
        f"                    st = mcache{n}.get(raw, _MISSING)",
        f"                    if st is _MISSING: st = mone{n}(raw, index)",
        *add,
        f"                elif raw is not None: multi{n}({_one_item(path)}, index, values)",
        f"        elif lst is not None: multi{n}(record, index, values)",
    ]
    if len(path) == 1:
        return [f"    lst = get({path[0]!r})", "    if type(lst) is list:", *[line[4:] for line in body]]
    return [
        f"    h = get({path[0]!r})",
        "    if type(h) is dict:",
        f"        lst = h.get({path[1]!r})",
        "        if type(lst) is list:",
        *body,
        f"    elif h is not None: multi{n}(record, index, values)",
    ]


def _one_item(path: tuple[str, ...]) -> str:
    """Source of a record holding only ``[raw]`` at ``path``: one odd list item, mapped the generic way."""
    inner = "[raw]"
    for segment in reversed(path):
        inner = f"{{{segment!r}: {inner}}}"
    return inner


def _multi_one(slot: _Field) -> Callable[[Any, int], Any]:
    return slot.convert


def _labels(dataset: str) -> Callable[[Mapping[str, Any], int, list[ValueRow]], None] | None:
    """The ``*_labels.NAME`` keys, through ``label_values`` as record_to_rows maps them."""
    if not _PLANS[dataset].labels:
        return None

    def add(record: Mapping[str, Any], index: int, out: list[ValueRow]) -> None:
        out.extend((key, value, None) for key, value in label_values(dataset, record, index))

    return add


@cache
def mapper(dataset: str) -> Mapper:
    """The compiled mapping of ``dataset``: ``(record, index) -> (scalars, values)``; RecordInvalid as
    record_to_rows raises it (the same field, value and reason)."""
    plan = _PLANS[dataset]
    scope: dict[str, Any] = {"_MISSING": _MISSING, "RecordInvalid": RecordInvalid}
    lines = ["def map_record(record, index):", "    get = record.get"]
    by_column = {slot.name: (n, slot) for n, slot in enumerate(plan.scalars)}
    out: list[str] = []
    for n, slot in enumerate(plan.scalars):
        scope[f"cache{n}"], scope[f"other{n}"], scope[f"nested{n}"] = slot.cache, _top_level(slot), _nested(slot)
        target = f"s{n}"
        if slot.first is None:
            lines.append(f"    {target} = nested{n}(record, index)")
        else:
            lines.append(f"    v = get({slot.first!r})")
            if slot.plain_int:
                lines.append(f"    if type(v) is int and {slot.minimum} <= v <= {slot.maximum}: {target} = v")
                lines.append(f"    elif v is None: {target} = None")
                lines.append(f"    else: {target} = other{n}(v, index)")
            else:  # cached stored forms, keyed as _Field.convert keys them; a miss converted at once
                scope[f"fresh{n}"] = slot.fresh
                lines.append(f"    if v is None: {target} = None")
                lines.append("    elif type(v) is str:")
                lines.append(f"        {target} = cache{n}.get(v, _MISSING)")
                lines.append(f"        if {target} is _MISSING: {target} = fresh{n}(v, index, v)")
                lines.append("    elif type(v) is int or type(v) is float:")
                lines.append("        k = (type(v), v)")
                lines.append(f"        {target} = cache{n}.get(k, _MISSING)")
                lines.append(f"        if {target} is _MISSING: {target} = fresh{n}(v, index, k)")
                lines.append(f"    else: {target} = other{n}(v, index)")
        if slot.ipkey is not None:
            lines.append(f"    {target}, {target}k = (None, None) if {target} is None else {target}")
    for column in scalar_columns(dataset):
        if column in by_column:
            out.append(f"s{by_column[column][0]}")
        else:  # the address key column of an IP key
            out.append(f"s{by_column[column.removesuffix('_ipkey')][0]}k")
    time_slot = by_column[plan.time_column][0]
    scope["missing_time"] = _missing_time(dataset)
    lines.append(f"    if s{time_slot} is None: missing_time(index)")
    lines.append("    values = []")
    for n, slot in enumerate(plan.multi):
        scope[f"multi{n}"] = _multi(slot)
        lines.extend(_inline_multi(n, slot, scope))
    labels = _labels(dataset)
    if labels is not None:
        scope["labels"] = labels
        lines.append("    labels(record, index, values)")
    lines.append("    if len(values) > 1: values = list(dict.fromkeys(values))")
    lines.append(f"    return ({', '.join(out)},), values")
    exec(compile("\n".join(lines), f"<mapper {dataset}>", "exec"), scope)  # our own generated code, from the schema
    compiled: Mapper = scope["map_record"]
    return compiled


def _missing_time(dataset: str) -> Callable[[int], None]:
    def fail(index: int) -> None:
        time_key = TIME_FIELD[dataset]
        raise RecordInvalid(
            index=index,
            field=time_key,
            value=None,
            reason=f"missing; every {dataset} record needs its time (RFC 3339, epoch seconds or epoch milliseconds)",
        )

    return fail
