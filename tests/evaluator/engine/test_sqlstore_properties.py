"""Property: the SQL store's aggregations equal a reference computed in Python from the same records
(the query dev's ``matches`` and ``stored_values``), for random flows, keys, metrics and queries."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import StaticPool

from evaluator.db import metadata
from evaluator.engine.execute import run
from evaluator.engine.model import Window
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.logstore import insert_records
from evaluator.query import compile_query
from evaluator.query.evaluate import matches
from evaluator.query.records import stored_values
from evaluator.query.schema import field
from tests.evaluator.engine.engine_data import flow
from tests.evaluator.engine.engine_helpers import T0, spec

WINDOW = Window.ending_at(T0, timedelta(minutes=10))
KEYS = ["source_namespace", "action", "dest_labels.labels", "dest_port"]
QUERIES = ["", "action = allow", "dest_port > 100", 'dest_labels.labels = "app=a"', "NOT source_namespace = ns1"]

flows = st.lists(
    st.builds(
        lambda minute, ns, action, labels, port, size: flow(
            T0 - timedelta(minutes=minute),
            source_namespace=ns,
            action=action,
            dest_labels={"labels": sorted(labels)},
            dest_port=port,
            bytes_in=size,
        ),
        minute=st.integers(min_value=0, max_value=14),
        ns=st.sampled_from(["ns1", "ns2", "ns3"]),
        action=st.sampled_from(["allow", "deny"]),
        labels=st.sets(st.sampled_from(["app=a", "app=b", "tier=x"]), max_size=2),
        port=st.sampled_from([53, 80, 443]),
        size=st.integers(min_value=0, max_value=1000),
    ),
    max_size=25,
)


def reference(records: list[dict[str, Any]], query: str, keys: list[str], metric: str) -> dict[tuple[Any, ...], float]:
    expr = compile_query(query, "flows")
    buckets: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for record in records:
        end = record["end_time"]
        if not (WINDOW.start.isoformat().replace("+00:00", "Z") < end <= WINDOW.end.isoformat().replace("+00:00", "Z")):
            continue
        if not matches(expr, "flows", record):
            continue
        per_key = []
        for key in keys:
            values = stored_values(field("flows", key), record)
            if field("flows", key).multi_valued:
                per_key.append(sorted({str(v) for v in values}) or [None])
            else:
                per_key.append([values[0] if values else None])
        for combo in itertools.product(*per_key):
            buckets[combo].append(float(record["bytes_in"]))
    reduce = {"count": len, "sum": sum, "min": min, "max": max, "avg": lambda v: sum(v) / len(v)}[metric]
    return {k: float(reduce(v)) for k, v in buckets.items()}


@settings(max_examples=40, deadline=None)
@given(
    records=flows,
    query=st.sampled_from(QUERIES),
    keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True),
    metric=st.sampled_from(["count", "sum", "min", "max", "avg"]),
)
def test_sql_aggregation_matches_the_python_reference(
    records: list[dict[str, Any]], query: str, keys: list[str], metric: str
) -> None:
    engine = sa.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    metadata.create_all(engine)
    with engine.begin() as conn:
        insert_records(conn, "flows", records)
    alert = spec(
        description="x",
        query=query,
        aggregateBy=tuple(keys),
        field=None if metric == "count" else "bytes_in",
        metric=metric,
        condition="gte",
        threshold=-1.0,
    )
    got = {tuple(f.record[k] for k in keys): f.value for f in run(alert, WINDOW, SqlLogStore(engine)).findings}
    expected = reference(records, query, keys, metric)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value)
    engine.dispose()
