"""run() over the embedded SQL store with generated logs: the spec's examples with exact events, every
metric and condition, multi-valued aggregation, window bounds, the bucket cap."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from evaluator.db import metadata
from evaluator.engine.execute import run
from evaluator.engine.model import BucketCapReached, Window
from evaluator.engine.sqlstore import SqlLogStore
from evaluator.logstore import insert_records
from tests.evaluator.engine.engine_data import audit, dns, flow
from tests.evaluator.engine.engine_helpers import T0, spec

WINDOW = Window.ending_at(T0, timedelta(minutes=10))
MIN = timedelta(minutes=1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path}/logs.db")
    else:
        eng = sa.create_engine(request.getfixturevalue("pg_database"))
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def load(engine: sa.Engine, dataset: str, records: list[dict[str, Any]]) -> SqlLogStore:
    with engine.begin() as conn:
        insert_records(conn, dataset, records)
    return SqlLogStore(engine)


def findings(result: Any) -> list[tuple[dict[str, Any], str]]:
    return sorted(((dict(f.record), f.description) for f in result.findings), key=repr)


def test_frequent_dns_responses(engine: sa.Engine) -> None:
    """The spec's example, with its slips fixed (qtype, aggregateBy as a list)."""
    store = load(
        engine,
        "dns",
        [
            dns(T0 - MIN, qname="bad.example.com", rcode="NXDomain", qtype="A", count=60),
            dns(T0 - 2 * MIN, qname="bad.example.com", rcode="NXDomain", qtype="AAAA", count=50),
            dns(T0 - 2 * MIN, qname="bad.example.com", rcode="NXDomain", qtype="MX", count=500),
            dns(T0 - 3 * MIN, qname="meh.example.com", rcode="NXDomain", qtype="A", count=99),
            dns(T0 - 3 * MIN, qname="ok.example.com", rcode="NoError", qtype="A", count=900),
            dns(T0 - 11 * MIN, qname="old.example.com", rcode="NXDomain", qtype="A", count=900),
        ],
    )
    alert = spec(
        description="Observed ${sum} NXDomain responses for ${qname}",
        severity=100,
        dataSet="dns",
        lookback=timedelta(minutes=10),
        query="rcode = NXDomain AND (qtype = A or qtype = AAAA)",
        aggregateBy=("qname",),
        field="count",
        metric="sum",
        condition="gte",
        threshold=100.0,
    )
    assert findings(run(alert, WINDOW, store)) == [
        ({"qname": "bad.example.com", "sum": 110.0}, "Observed 110 NXDomain responses for bad.example.com")
    ]


def test_postgres_from_the_internet_unconditional_per_pattern(engine: sa.Engine) -> None:
    store = load(
        engine,
        "flows",
        [
            flow(T0 - MIN),
            flow(T0 - 2 * MIN),  # same pattern: one finding
            flow(T0 - 2 * MIN, source_ip="198.51.100.9"),
            flow(T0 - 2 * MIN, action="deny", source_ip="192.0.2.99"),
            flow(T0 - 2 * MIN, source_type="wep", source_ip="10.0.0.8"),
            flow(T0 - 2 * MIN, dest_labels={"labels": ["application=web"]}, source_ip="192.0.2.50"),
        ],
    )
    alert = spec(
        description="Internet to postgres ${dest_namespace}/${dest_name} from ${source_ip}",
        lookback=timedelta(minutes=75),
        period=timedelta(hours=1),
        query='dest_labels.labels="application=postgres" AND source_type=net AND action=allow AND proto=tcp '
        "AND dest_port=5432",
        aggregateBy=("dest_namespace", "dest_name", "source_ip"),
        metric=None,
        condition=None,
        threshold=None,
    )
    assert findings(run(alert, WINDOW, store)) == [
        (
            {"dest_namespace": "prod", "dest_name": "db-0", "source_ip": "198.51.100.9"},
            "Internet to postgres prod/db-0 from 198.51.100.9",
        ),
        (
            {"dest_namespace": "prod", "dest_name": "db-0", "source_ip": "203.0.113.7"},
            "Internet to postgres prod/db-0 from 203.0.113.7",
        ),
    ]


def test_sample_and_template_aggregations(engine: sa.Engine) -> None:
    store = load(
        engine,
        "flows",
        [
            flow(
                T0 - MIN,
                source_namespace="shop",
                source_name_aggr="web-*",
                dest_namespace="shop",
                dest_port=80,
                dest_name_aggr="api-*",
                num_flows=3,
            ),
            flow(
                T0 - MIN,
                source_namespace="shop",
                source_name_aggr="web-*",
                dest_namespace="shop",
                dest_port=80,
                dest_name_aggr="api-*",
                num_flows=4,
            ),
            flow(
                T0 - MIN,
                source_namespace="ops",
                source_name_aggr="cron-*",
                dest_namespace="shop",
                dest_port=80,
                dest_name_aggr="api-*",
                num_flows=1,
                action="deny",
            ),
        ],
    )
    sample = spec(
        description="Sample ${sum}",
        query="action=allow",
        aggregateBy=("source_namespace", "source_name_aggr"),
        field="num_flows",
        metric="sum",
        condition="gt",
        threshold=0.0,
    )
    assert findings(run(sample, WINDOW, store)) == [
        ({"source_namespace": "shop", "source_name_aggr": "web-*", "sum": 7.0}, "Sample 7")
    ]
    http = spec(
        description="HTTP connections from ${source_namespace}/${source_name_aggr} to shop/${dest_name_aggr}",
        severity=50,
        query='dest_namespace="shop" AND dest_port=80',
        aggregateBy=("source_namespace", "dest_name_aggr", "source_name_aggr"),
        field="num_flows",
        metric="sum",
        condition="gte",
        threshold=1.0,
    )
    assert [d for _, d in findings(run(http, WINDOW, store))] == [
        "HTTP connections from ops/cron-* to shop/api-*",
        "HTTP connections from shop/web-* to shop/api-*",
    ]


VALUES = [5, 10, 10, 25]  # bytes_in of four flows of one namespace in the window


@pytest.mark.parametrize(
    ("metric", "value"), [("count", 4.0), ("min", 5.0), ("max", 25.0), ("sum", 50.0), ("avg", 12.5)]
)
@pytest.mark.parametrize(
    ("condition", "offset", "fires"),
    [
        ("eq", 0, True),
        ("eq", 1, False),
        ("not_eq", 1, True),
        ("not_eq", 0, False),
        ("lt", 1, True),
        ("lt", 0, False),
        ("lte", 0, True),
        ("lte", -1, False),
        ("gt", -1, True),
        ("gt", 0, False),
        ("gte", 0, True),
        ("gte", 1, False),
    ],
)
def test_every_metric_and_condition(
    engine: sa.Engine, metric: str, value: float, condition: str, offset: int, fires: bool
) -> None:
    store = load(engine, "flows", [flow(T0 - MIN, source_namespace="a", bytes_in=v) for v in VALUES])
    alert = spec(
        description="${metric}",
        aggregateBy=("source_namespace",),
        field=None if metric == "count" else "bytes_in",
        metric=metric,
        condition=condition,
        threshold=value + offset,
    )
    result = run(alert, WINDOW, store)
    expected = [({"source_namespace": "a", metric: value}, "${metric}")] if fires else []
    assert findings(result) == expected


def test_metric_without_aggregation_is_one_bucket_even_over_no_rows(engine: sa.Engine) -> None:
    store = load(engine, "flows", [flow(T0 - MIN, bytes_out=7), flow(T0 - MIN, bytes_out=8)])
    total = spec(
        description="${sum} bytes out", aggregateBy=(), field="bytes_out", metric="sum", condition="gt", threshold=10.0
    )
    assert findings(run(total, WINDOW, store)) == [({"sum": 15.0}, "15 bytes out")]
    quiet = spec(
        description="only ${count} flows",
        aggregateBy=(),
        query="action=deny",
        metric="count",
        condition="lt",
        threshold=1.0,
    )
    assert findings(run(quiet, WINDOW, store)) == [({"count": 0.0}, "only 0 flows")]


def test_per_hit_alert_reports_whole_records(engine: sa.Engine) -> None:
    store = load(
        engine,
        "audit",
        [
            audit(T0 - MIN),
            audit(T0 - 2 * MIN, verb="create"),
            audit(T0 - 3 * MIN, objectRef={"resource": "networkpolicies", "name": "x", "namespace": "prod"}),
        ],
    )
    alert = spec(
        description="${user.username} deleted ${objectRef.name}",
        dataSet="audit",
        query="verb=delete AND objectRef.resource=globalnetworkpolicies",
        aggregateBy=(),
        metric=None,
        condition=None,
        threshold=None,
    )
    result = run(alert, WINDOW, store)
    assert result.per_hit
    assert [(dict(f.record), f.description) for f in result.findings] == [(audit(T0 - MIN), "alice deleted deny-all")]


def test_multi_valued_aggregation_counts_a_record_in_each_of_its_buckets(engine: sa.Engine) -> None:
    store = load(
        engine,
        "flows",
        [
            flow(T0 - MIN, dest_labels={"labels": ["app=a", "tier=x"]}),
            flow(T0 - MIN, dest_labels={"labels": ["app=a"]}),
            flow(T0 - MIN, dest_labels={"labels": []}),
        ],
    )
    alert = spec(
        description="${dest_labels.labels}: ${count}",
        aggregateBy=("dest_labels.labels",),
        metric="count",
        condition="gte",
        threshold=1.0,
    )
    assert findings(run(alert, WINDOW, store)) == [
        ({"dest_labels.labels": "app=a", "count": 2.0}, "app=a: 2"),
        ({"dest_labels.labels": "tier=x", "count": 1.0}, "tier=x: 1"),
        ({"dest_labels.labels": None, "count": 1.0}, ": 1"),
    ]


def test_window_excludes_its_start_and_includes_its_end(engine: sa.Engine) -> None:
    store = load(
        engine,
        "flows",
        [
            flow(WINDOW.start, source_namespace="at-start"),
            flow(WINDOW.start + timedelta(seconds=1), source_namespace="after-start"),
            flow(T0, source_namespace="at-end"),
            flow(T0 + timedelta(seconds=1), source_namespace="after-end"),
        ],
    )
    alert = spec(description="${source_namespace}", metric=None, condition=None, threshold=None)
    assert [r["source_namespace"] for r, _ in findings(run(alert, WINDOW, store))] == ["after-start", "at-end"]


def test_reaching_the_bucket_cap_is_an_error_not_a_truncation(engine: sa.Engine) -> None:
    store = load(engine, "flows", [flow(T0 - MIN, source_ip=f"192.0.2.{i}") for i in range(6)])
    alert = spec(description="${source_ip}", aggregateBy=("source_ip",), metric=None, condition=None, threshold=None)
    assert len(run(alert, WINDOW, store, bucket_cap=6).findings) == 6
    with pytest.raises(BucketCapReached, match="more than 5 aggregation buckets"):
        run(alert, WINDOW, store, bucket_cap=5)
    per_hit = spec(description="x", aggregateBy=(), metric=None, condition=None, threshold=None)
    with pytest.raises(BucketCapReached, match="more than 5 matching records"):
        run(per_hit, WINDOW, store, bucket_cap=5)


def test_label_keys_and_nested_servers_aggregate(engine: sa.Engine) -> None:
    store = load(
        engine,
        "dns",
        [
            dns(T0 - MIN, client_labels={"app": "web"}, count=3),
            dns(T0 - MIN, client_labels={"app": "api"}, count=4),
            dns(
                T0 - MIN,
                client_labels={"app": "web"},
                count=5,
                servers=[
                    {"name": "coredns-2", "name_aggr": "coredns-*", "namespace": "kube-system", "ip": "10.96.0.11"}
                ],
            ),
        ],
    )
    by_label = spec(
        description="${client_labels.app}: ${sum}",
        dataSet="dns",
        aggregateBy=("client_labels.app",),
        field="count",
        metric="sum",
        condition="gt",
        threshold=0.0,
    )
    assert findings(run(by_label, WINDOW, store)) == [
        ({"client_labels.app": "api", "sum": 4.0}, "api: 4"),
        ({"client_labels.app": "web", "sum": 8.0}, "web: 8"),
    ]
    by_server = spec(
        description="${servers.name}",
        dataSet="dns",
        aggregateBy=("servers.name",),
        metric="count",
        condition="gte",
        threshold=1.0,
    )
    assert [(r["servers.name"], r["count"]) for r, _ in findings(run(by_server, WINDOW, store))] == [
        ("coredns-1", 2.0),
        ("coredns-2", 1.0),
    ]
