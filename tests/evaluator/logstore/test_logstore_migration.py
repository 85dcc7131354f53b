"""Revision 0010 (values rows without a foreign key, one index): records and their values stored before
it are all there after it, found by queries, and the downgrade restores the key and the index."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from api.db import alembic_config, make_engine
from evaluator.logstore import table_for
from evaluator.query.parser import parse
from evaluator.query.sql import to_sql

VALUES = [(1, "dest_labels.labels", "app=db", None), (1, "original_source_ips", "10.0.0.9", "40a000009")]


def test_values_survive_the_upgrade_and_the_downgrade(db_url: str) -> None:
    config = alembic_config(db_url)
    command.downgrade(config, "0009_resource_versions")  # db_url is at head
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO logstore_flows (id, end_time, record) VALUES (1, 1764740400, '{\"end_time\": 1764740400}')"
            )
            for row in VALUES:
                conn.execute(
                    sa.text(
                        'INSERT INTO logstore_flows_values (record_id, "key", value, ip_key) VALUES (:r, :k, :v, :i)'
                    ),
                    dict(zip("rkvi", row, strict=True)),
                )
        command.upgrade(config, "head")
        inspector = sa.inspect(engine)
        assert inspector.get_foreign_keys("logstore_flows_values") == []
        assert [i["name"] for i in inspector.get_indexes("logstore_flows_values")] == [
            "ix_logstore_flows_values_record_id"
        ]
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                'SELECT record_id, "key", value, ip_key FROM logstore_flows_values ORDER BY "key"'
            ).all()
            assert [tuple(r) for r in rows] == VALUES
            main = table_for("flows")
            for query in ('dest_labels.labels = "app=db"', "original_source_ips IN {10.0.0.0/24}"):
                found = conn.execute(sa.select(main.c.id).where(to_sql(parse(query), "flows"))).all()
                assert [r[0] for r in found] == [1], query
        command.downgrade(config, "0009_resource_versions")
        engine.dispose()  # SQLite: a pooled connection keeps the schema it read
        inspector = sa.inspect(engine)
        keys = inspector.get_foreign_keys("logstore_flows_values")
        assert [fk["referred_table"] for fk in keys] == ["logstore_flows"]
        assert "ix_logstore_flows_values_key" in {i["name"] for i in inspector.get_indexes("logstore_flows_values")}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM logstore_flows_values").scalar() == 2
    finally:
        engine.dispose()
