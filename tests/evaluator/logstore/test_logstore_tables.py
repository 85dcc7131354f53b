"""Log store: record -> rows mapping, validation errors naming the field, query semantics, migration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, select

from evaluator.db import metadata
from evaluator.logstore import RecordInvalid, column_for, insert_records, table_for, values_table_for
from evaluator.logstore.tables import record_to_rows
from evaluator.query import DATASETS, QueryError, compile_query, to_sql
from evaluator.query.sql import time_range

FLOW = {
    "start_time": "2024-03-01T10:00:00Z",
    "end_time": "2024-03-01T10:05:00Z",
    "action": "allow",
    "bytes_in": 1200,
    "bytes_out": 800,
    "dest_ip": "10.0.0.12",
    "dest_name": "postgres-0",
    "dest_name_aggr": "postgres-*",
    "dest_namespace": "db",
    "dest_port": 5432,
    "dest_type": "wep",
    "dest_labels": {"labels": ["application=postgres", "tier=db"]},
    "reporter": "dst",
    "num_flows": 3,
    "proto": "tcp",
    "policies": {"all_policies": ["0|default|default.allow-db|allow"]},
    "source_ip": "203.0.113.7",
    "source_name": "-",
    "source_name_aggr": "pub",
    "source_namespace": "-",
    "source_type": "net",
    "source_labels": {"labels": None},
    "original_source_ips": ["198.51.100.1", "2001:db8::7"],
    "num_original_source_ips": 2,
}
DNS = {
    "start_time": 1709287200,
    "end_time": 1709287500.5,
    "count": 7,
    "client_name": "web-1",
    "client_name_aggr": "web-*",
    "client_namespace": "shop",
    "client_labels": {"app": "web", "app.kubernetes.io/name": "shop"},
    "client_ip": "10.0.1.3",
    "servers": [
        {
            "name": "coredns-1",
            "name_aggr": "coredns-*",
            "namespace": "kube-system",
            "ip": "10.96.0.10",
            "labels": {"k8s-app": "kube-dns"},
        }
    ],
    "qname": "Example.COM",
    "qtype": "AAAA",
    "rclass": "IN",
    "rcode": "NoError",
    "rrsets": [{"name": "example.com", "type": "AAAA", "class": "IN", "rdata": ["2606:2800:220:1::1"]}],
}
AUDIT = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Event",
    "level": "Metadata",
    "auditID": "1b5e",
    "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/default/pods",
    "verb": "create",
    "user": {"username": "alice", "groups": ["dev", "system:authenticated"]},
    "sourceIPs": ["192.0.2.10"],
    "objectRef": {"resource": "pods", "namespace": "default", "name": "p1", "apiVersion": "v1"},
    "responseStatus": {"code": 201},
    "requestReceivedTimestamp": "2024-03-01T10:00:00.123456Z",
    "stageTimestamp": "2024-03-01T10:00:00.200000Z",
}
SAMPLES = {"flows": FLOW, "dns": DNS, "audit": AUDIT}


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    tables = [table for dataset in DATASETS for table in (table_for(dataset), values_table_for(dataset))]
    metadata.create_all(engine, tables=tables)
    yield engine
    engine.dispose()


def test_flow_record_maps_to_typed_columns_and_values() -> None:
    rows = record_to_rows("flows", FLOW)
    assert rows.row["end_time"] == pytest.approx(1709287500.0)
    assert rows.row["dest_port"] == 5432
    assert rows.row["source_ip"] == "203.0.113.7"
    assert rows.row["source_ip_ipkey"] == "4cb007107"
    assert rows.row["record"] == FLOW
    values = {(value["key"], value["value"]) for value in rows.values}
    assert values == {
        ("dest_labels.labels", "application=postgres"),
        ("dest_labels.labels", "tier=db"),
        ("policies.all_policies", "0|default|default.allow-db|allow"),
        ("original_source_ips", "198.51.100.1"),
        ("original_source_ips", "2001:db8::7"),
    }
    v6 = next(value for value in rows.values if value["value"] == "2001:db8::7")
    assert v6["ip_key"] == "6" + "20010db8" + "0" * 23 + "7"


def test_dns_record_maps_labels_servers_and_rrsets() -> None:
    rows = record_to_rows("dns", DNS)
    assert rows.row["qname"] == "example.com"  # domains are stored in canonical (lower) case
    assert rows.row["end_time"] == pytest.approx(1709287500.5)
    keys = {(value["key"], value["value"]) for value in rows.values}
    assert ("client_labels.app", "web") in keys
    assert ("client_labels.app.kubernetes.io/name", "shop") in keys
    assert ("servers.labels.k8s-app", "kube-dns") in keys
    assert ("servers.namespace", "kube-system") in keys
    assert ("rrsets.rdata", "2606:2800:220:1::1") in keys
    assert ("rrsets.type", "AAAA") in keys


@pytest.mark.parametrize(
    ("dataset", "change", "field", "reason"),
    [
        ("flows", {"dest_port": "http"}, "dest_port", "expected an integer"),
        ("flows", {"dest_port": 70000}, "dest_port", "from 0 to 65535"),
        ("flows", {"source_ip": "10.0.0.300"}, "source_ip", "not an IP address"),
        ("flows", {"end_time": "last tuesday"}, "end_time", "RFC 3339"),
        ("flows", {"end_time": None}, "end_time", "missing"),
        ("flows", {"source_ip": ["10.0.0.1", "10.0.0.2"]}, "source_ip", "expected one value"),
        ("flows", {"bytes_in": {"x": 1}}, "bytes_in", "expected a single int"),
        ("flows", {"original_source_ips": ["nope"]}, "original_source_ips", "not an IP address"),
        ("dns", {"client_labels": ["a"]}, "client_labels", "expected an object"),
        ("audit", {"responseStatus": {"code": 42}}, "responseStatus.code", "from 100 to 599"),
        ("audit", {"sourceIPs": ["x"]}, "sourceIPs", "not an IP address"),
        ("audit", {"auditID": "a\x00b"}, "", "NUL"),
        ("audit", {"auditID": float("nan")}, "", "not storable as JSON"),
    ],
)
def test_bad_records_name_the_field(
    engine: Engine, dataset: str, change: dict[str, Any], field: str, reason: str
) -> None:
    record = {**SAMPLES[dataset], **change}
    with pytest.raises(RecordInvalid) as info:
        record_to_rows(dataset, record, index=3)
    assert info.value.field == field
    assert info.value.index == 3
    assert reason in str(info.value)
    assert str(info.value).startswith("record 3: field")
    with pytest.raises(RecordInvalid) as stored:  # the writer's compiled mapping: the same error, nothing stored
        with engine.begin() as conn:
            insert_records(conn, dataset, [SAMPLES[dataset]] * 3 + [record])
    assert str(stored.value) == str(info.value)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table_for(dataset))).scalar_one() == 0


def test_insert_is_all_or_nothing_and_counts(engine: Engine) -> None:
    with pytest.raises(RecordInvalid, match="record 1"):
        with engine.begin() as conn:
            insert_records(conn, "flows", [FLOW, {**FLOW, "dest_port": -1}])
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(table_for("flows"))).scalar() == 0
        assert insert_records(conn, "flows", [FLOW, FLOW]) == 2
        assert insert_records(conn, "flows", []) == 0
        assert conn.execute(select(func.count()).select_from(values_table_for("flows"))).scalar() == 10


def selected(engine: Engine, dataset: str, query: str) -> int:
    expr = compile_query(query, dataset)
    with engine.connect() as conn:
        statement = select(func.count()).select_from(table_for(dataset)).where(to_sql(expr, dataset))
        return int(conn.execute(statement).scalar_one())


@pytest.mark.parametrize(
    ("dataset", "query", "count"),
    [
        ("flows", "", 1),
        (
            "flows",
            'dest_labels.labels="application=postgres" AND source_type=net AND action=allow '
            "AND proto=tcp AND dest_port=5432",
            1,
        ),
        ("flows", 'source_ip = "203.0.113.0/24"', 1),
        ("flows", 'source_ip = "203.0.112.0/24"', 0),
        ("flows", 'original_source_ips = "2001:db8::/32"', 1),
        ("flows", 'original_source_ips = "::/0" AND original_source_ips = "0.0.0.0/0"', 1),
        ("flows", 'source_labels.labels != "app=x"', 1),
        ("flows", 'source_labels.labels IN {"*"}', 0),
        ("flows", 'dest_name_aggr = "postgres-*"', 1),
        ("flows", 'dest_name_aggr IN {"POSTGRES-*"}', 1),
        ("flows", "http_requests_denied_in != 0", 1),
        ("flows", "http_requests_denied_in >= 0", 0),
        ("flows", 'policies.all_policies IN {"*allow-db*"}', 1),
        ("dns", "qname = example.com AND qtype = 28", 1),
        ("dns", 'rrsets.type = AAAA AND "servers.labels.k8s-app" = "kube-dns"', 1),
        ("dns", '"client_labels.app.kubernetes.io/name" = shop', 1),
        ("dns", "rcode IN {noerror}", 0),
        ("dns", "rcode IN {No*}", 1),
        ("dns", 'end_time > "2024-03-01T10:05:00Z" AND end_time < "2024-03-01T10:05:01Z"', 1),
        ("audit", 'user.groups = "system:authenticated" AND verb IN {cr*}', 1),
        ("audit", 'requestReceivedTimestamp >= "2024-03-01T10:00:00.123456Z"', 1),
        ("audit", 'requestReceivedTimestamp > "2024-03-01T10:00:00.123456Z"', 0),
    ],
)
def test_queries_over_stored_samples(engine: Engine, dataset: str, query: str, count: int) -> None:
    with engine.begin() as conn:
        insert_records(conn, dataset, [SAMPLES[dataset]])
    assert selected(engine, dataset, query) == count


def test_time_range_and_group_by_columns(engine: Engine) -> None:
    from datetime import UTC, datetime

    with engine.begin() as conn:
        insert_records(conn, "flows", [FLOW, {**FLOW, "end_time": "2024-03-01T11:00:00Z", "bytes_in": 5}])
        window = time_range(
            "flows", start=datetime(2024, 3, 1, 10, 5, tzinfo=UTC), end=datetime(2024, 3, 1, 11, tzinfo=UTC)
        )
        main = table_for("flows")
        rows = conn.execute(
            select(column_for("flows", "dest_namespace"), func.sum(column_for("flows", "bytes_in")))
            .where(window)
            .group_by(column_for("flows", "dest_namespace"))
        ).all()
        assert rows == [("db", 1200)]
        assert conn.execute(select(main.c.record).where(window)).scalar_one() == FLOW
    with pytest.raises(QueryError, match="holds many values"):
        column_for("flows", "dest_labels.labels")
    with pytest.raises(QueryError, match='did you mean "num_flows"'):
        column_for("flows", "count")


def _migrated(url: str) -> None:
    from alembic import command

    from api.db import alembic_config

    config = alembic_config(url)
    command.upgrade(config, "0002_logstore")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            insert_records(conn, "dns", [DNS])
            assert selected(engine, "dns", "rrsets.type = AAAA") == 0  # not committed yet
        assert selected(engine, "dns", 'servers.ip = "10.96.0.0/12" AND client_labels.app = web') == 1
        command.upgrade(config, "head")  # later revisions (ingest keys) keep the rows stored before them
        assert selected(engine, "dns", 'servers.ip = "10.96.0.0/12" AND client_labels.app = web') == 1
        with engine.connect() as conn:
            ours = {table.name for dataset in DATASETS for table in (table_for(dataset), values_table_for(dataset))}
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
            assert [op for op in diff if _table_of(op) in ours] == []
    finally:
        engine.dispose()
    command.downgrade(config, "0001_initial")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert not engine.dialect.has_table(conn, "logstore_flows")
    finally:
        engine.dispose()


def _table_of(op: Any) -> str | None:
    if isinstance(op, list):
        op = op[0]
    for item in op[1:]:
        name = getattr(item, "name", None) if not isinstance(item, str) else None
        table = getattr(item, "table", None)
        if table is not None:
            return str(table.name)
        if name is not None and hasattr(item, "columns"):
            return str(name)
    return str(op[2]) if len(op) > 2 and isinstance(op[2], str) else None


def test_migration_on_sqlite(tmp_path: Any) -> None:
    _migrated(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.postgres
def test_migration_on_postgres(pg_database: str) -> None:
    _migrated(pg_database)


@pytest.mark.parametrize("records", [1, 31, 32, 33, 97, 2100])
def test_insert_in_multi_row_groups_stores_every_row_once(engine: Engine, records: int) -> None:
    # SQLite gets rows in groups per INSERT (up to 1024, within the variable limit): full groups and the rest.
    batch = [
        {**FLOW, "dest_port": port, "dest_labels": {"labels": [f"app=a{port}", "tier=t"]}} for port in range(records)
    ]
    with engine.begin() as conn:
        assert insert_records(conn, "flows", batch) == records
    main, values = table_for("flows"), values_table_for("flows")
    with engine.connect() as conn:
        ports = {row.id: row.dest_port for row in conn.execute(select(main.c.id, main.c.dest_port))}
        labels = conn.execute(
            select(values.c.record_id, values.c.value).where(values.c.key == "dest_labels.labels")
        ).all()
    assert sorted(ports.values()) == list(range(records))
    assert sorted((ports[record_id], value) for record_id, value in labels) == sorted(
        pair for port in range(records) for pair in ((port, f"app=a{port}"), (port, "tier=t"))
    )
