"""The embedded log store: the query dev's SQL tables (``evaluator.logstore.tables``), queried with SQL.

Aggregations over scalar keys are one ``GROUP BY`` streamed from the server in pages (memory stays flat
whatever the row count). When an ``aggregateBy`` key is multi-valued (``dest_labels.labels``,
``servers.name``, ...), a record counts in the bucket of each of its values, as Elasticsearch's composite
aggregation does; those buckets are built here from the matching records, streamed likewise, and stop at
the caller's limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from evaluator.engine.model import Bucket, Hit, StoreError, Window
from evaluator.events import utc
from evaluator.logstore.tables import column_for, table_for
from evaluator.query import TIME_FIELD
from evaluator.query.schema import FieldSpec, field
from evaluator.query.sql import to_sql

PAGE_ROWS = 2_000


def _record_column(table: sa.Table) -> sa.Column[Any]:
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            return column
    raise RuntimeError(f"log table {table.name} has no JSON column holding the original record")


def values_at(record: Mapping[str, Any], spec: FieldSpec) -> list[Any]:
    """Every value of ``spec`` in ``record``, walking its path through dicts and flattening lists."""
    current: list[Any] = [record]
    for part in spec.path:
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, Mapping) and part in item:
                value = item[part]
                nxt.extend(value if isinstance(value, list) else [value])
            elif isinstance(item, list):
                for sub in item:
                    if isinstance(sub, Mapping) and part in sub:
                        value = sub[part]
                        nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return [v for v in current if v is not None and not isinstance(v, Mapping | list)]


class _Accumulator:
    __slots__ = ("count", "total", "low", "high", "seen")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.low: float | None = None
        self.high: float | None = None
        self.seen = 0

    def add(self, values: Sequence[float]) -> None:
        self.count += 1
        for v in values:
            self.total += v
            self.seen += 1
            self.low = v if self.low is None or v < self.low else self.low
            self.high = v if self.high is None or v > self.high else self.high

    def value(self, metric: str | None) -> float | None:
        if metric in (None, "count"):
            return None
        if metric == "sum":
            return self.total
        if metric == "min":
            return self.low
        if metric == "max":
            return self.high
        return self.total / self.seen if self.seen else None


class SqlLogStore:
    def __init__(self, engine: sa.Engine, *, page_rows: int = PAGE_ROWS) -> None:
        self._engine = engine
        self._page_rows = page_rows

    def _where(self, dataset: str, query: Any, window: Window) -> list[sa.ColumnElement[bool]]:
        time_col = column_for(dataset, TIME_FIELD[dataset])
        clauses: list[sa.ColumnElement[bool]] = [time_col > utc(window.start), time_col <= utc(window.end)]
        if query is not None:
            clauses.append(to_sql(query, dataset))
        return clauses

    def _stream(self, stmt: sa.Select[Any]) -> Iterator[sa.Row[Any]]:
        try:
            with self._engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self._page_rows).execute(stmt)
                yield from result
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"embedded log store query failed: {exc.orig or exc}") from exc

    def aggregate(
        self,
        *,
        dataset: str,
        query: Any,
        window: Window,
        aggregate_by: Sequence[str],
        metric: str | None,
        field: str | None,
        limit: int,
    ) -> Iterator[Bucket]:
        specs = [_field(dataset, key) for key in aggregate_by]
        if any(s.multi_valued for s in specs):
            yield from self._aggregate_records(dataset, query, window, specs, metric, field, limit)
            return
        keys = [column_for(dataset, key).label(f"k{i}") for i, key in enumerate(aggregate_by)]
        metric_expr = _metric(dataset, metric, field)
        stmt = sa.select(*keys, sa.func.count().label("n"), metric_expr.label("v")).where(
            *self._where(dataset, query, window)
        )
        if keys:
            raw = [column_for(dataset, key) for key in aggregate_by]
            stmt = stmt.where(*(c.is_not(None) for c in raw)).group_by(*raw).order_by(*raw).limit(limit)
        for row in self._stream(stmt):
            value = row.v
            yield Bucket(
                key=tuple(row[i] for i in range(len(keys))),
                doc_count=int(row.n),
                value=None if value is None else float(value),
            )

    def _aggregate_records(
        self,
        dataset: str,
        query: Any,
        window: Window,
        specs: Sequence[FieldSpec],
        metric: str | None,
        field_key: str | None,
        limit: int,
    ) -> Iterator[Bucket]:
        table = table_for(dataset)
        record_col = _record_column(table)
        metric_spec = _field(dataset, field_key) if field_key and metric not in (None, "count") else None
        stmt = sa.select(record_col).where(*self._where(dataset, query, window))
        buckets: dict[tuple[Any, ...], _Accumulator] = {}
        full = False
        for row in self._stream(stmt):
            record = row[0]
            per_key = [sorted(set(values_at(record, s)), key=str) for s in specs]
            numbers = [float(v) for v in values_at(record, metric_spec)] if metric_spec else []
            for combo in itertools.product(*per_key):
                acc = buckets.get(combo)
                if acc is None:
                    if len(buckets) >= limit:
                        full = True  # the caller asked for at most ``limit``: it reports the cap
                        break
                    acc = buckets[combo] = _Accumulator()
                acc.add(numbers)
            if full:
                break
        for combo in sorted(buckets, key=lambda k: tuple(str(v) for v in k)):
            acc = buckets[combo]
            yield Bucket(key=combo, doc_count=acc.count, value=acc.value(metric))

    def hits(self, *, dataset: str, query: Any, window: Window, limit: int) -> Iterator[Hit]:
        table = table_for(dataset)
        record_col = _record_column(table)
        id_col = next(iter(table.primary_key.columns))
        time_col = column_for(dataset, TIME_FIELD[dataset])
        stmt = (
            sa.select(id_col, time_col, record_col)
            .where(*self._where(dataset, query, window))
            .order_by(time_col, id_col)
            .limit(limit)
        )
        for row in self._stream(stmt):
            yield Hit(id=f"{dataset}:{row[0]}", time=utc(row[1]), record=row[2])


def _field(dataset: str, key: str) -> FieldSpec:
    return field(dataset, key)


def _metric(dataset: str, metric: str | None, field_key: str | None) -> sa.ColumnElement[Any]:
    if metric in (None, "count") or field_key is None:
        return sa.null()
    column = column_for(dataset, field_key)
    if metric == "sum":  # a sum over no rows is 0, as in Elasticsearch
        return sa.func.coalesce(sa.func.sum(column), 0)
    functions = {"min": sa.func.min, "max": sa.func.max, "avg": sa.func.avg}
    return functions[metric](column)
