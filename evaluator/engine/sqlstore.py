"""The embedded log store: the SQL tables of ``evaluator.logstore`` queried with SQL.

An aggregation is one ``GROUP BY`` streamed from the server in pages, so memory stays flat whatever the
row count. A multi-valued ``aggregateBy`` key (``dest_labels.labels``, ``servers.name``, ...) joins the
values table, so a record counts in the bucket of each of its values, as Elasticsearch's terms
aggregation does; a record without a value is in the null bucket (outer join), as the OpenSearch
composite with ``missing_bucket``. Times are epoch seconds in the tables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from evaluator.engine.model import Bucket, Hit, StoreError, Window
from evaluator.logstore.tables import column_for, table_for, values_table_for
from evaluator.query import TIME_FIELD, to_sql
from evaluator.query.schema import field

log = logging.getLogger(__name__)

PAGE_ROWS = 2_000


def epoch(moment: datetime) -> float:
    return moment.timestamp()


class SqlLogStore:
    def __init__(self, engine: sa.Engine, *, page_rows: int = PAGE_ROWS) -> None:
        self._engine = engine
        self._page_rows = page_rows

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def _where(self, dataset: str, query: Any, window: Window) -> list[sa.ColumnElement[bool]]:
        time_col = column_for(dataset, TIME_FIELD[dataset])
        clauses: list[sa.ColumnElement[bool]] = [time_col > epoch(window.start), time_col <= epoch(window.end)]
        if query is not None:
            clauses.append(to_sql(query, dataset))
        return clauses

    def _stream(self, stmt: sa.Select[Any]) -> Iterator[sa.Row[Any]]:
        try:
            with self._engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self._page_rows).execute(stmt)
                yield from result
        except sa.exc.DBAPIError as exc:
            # The driver's text names the database host and user: logged here, never passed to clients.
            log.warning("embedded log store query failed: %s", exc.orig or exc)
            database = self._engine.url.database or "in memory"
            raise StoreError(
                f"the embedded log store (database {database}) cannot answer now ({type(exc.orig or exc).__name__})"
            ) from exc

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
        main = table_for(dataset)
        source: sa.FromClause = main
        keys: list[sa.ColumnElement[Any]] = []
        for i, key in enumerate(aggregate_by):
            if _multi_valued(dataset, key):
                values = values_table_for(dataset).alias(f"v{i}")
                source = source.outerjoin(values, sa.and_(values.c.record_id == main.c.id, values.c.key == key))
                keys.append(values.c.value)
            else:
                keys.append(column_for(dataset, key))
        metric_expr = _metric(dataset, metric, field)
        stmt = (
            sa.select(*keys, sa.func.count().label("n"), metric_expr.label("v"))
            .select_from(source)
            .where(*self._where(dataset, query, window))
        )
        if keys:
            stmt = stmt.group_by(*keys).order_by(*keys).limit(limit)
        for row in self._stream(stmt):
            value = row.v
            yield Bucket(
                key=tuple(row[i] for i in range(len(keys))),
                doc_count=int(row.n),
                value=None if value is None else float(value),
            )

    def hits(self, *, dataset: str, query: Any, window: Window, limit: int) -> Iterator[Hit]:
        main = table_for(dataset)
        time_col = column_for(dataset, TIME_FIELD[dataset])
        stmt = (
            sa.select(main.c.id, time_col, main.c.record)
            .where(*self._where(dataset, query, window))
            .order_by(time_col, main.c.id)
            .limit(limit)
        )
        for row in self._stream(stmt):
            record_id, seconds, record = row[0], row[1], row[2]  # type: ignore[misc]
            yield Hit(id=f"{dataset}:{record_id}", time=datetime.fromtimestamp(seconds, UTC), record=record)

    def delete_before(self, dataset: str, cutoff: datetime) -> int:
        """Retention: drop records older than ``cutoff`` (their values go with them)."""
        main = table_for(dataset)
        values = values_table_for(dataset)
        time_col = column_for(dataset, TIME_FIELD[dataset])
        old = sa.select(main.c.id).where(time_col < epoch(cutoff))
        with self._engine.begin() as conn:
            conn.execute(values.delete().where(values.c.record_id.in_(old)))
            return conn.execute(main.delete().where(time_col < epoch(cutoff))).rowcount


def _multi_valued(dataset: str, key: str) -> bool:
    spec = field(dataset, key)
    return spec.multi_valued or spec.dynamic


def _metric(dataset: str, metric: str | None, field_key: str | None) -> sa.ColumnElement[Any]:
    if metric in (None, "count") or field_key is None:
        return sa.null()
    column = column_for(dataset, field_key)
    if metric == "sum":  # a sum over no rows is 0, as in Elasticsearch
        return sa.func.coalesce(sa.func.sum(column), 0)
    if metric == "min":
        return sa.func.min(column)
    if metric == "max":
        return sa.func.max(column)
    return sa.func.avg(column)
