"""Revision 0011 (the content hash in the time index): records stored before it with ``hash:`` and ``id:``
keys are recognised after it (a retry stores nothing twice, an ``_id`` still conflicts), and the
downgrade writes the keys back."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import command

from api.db import alembic_config, make_engine
from evaluator.engine.ingest import IndexPatterns, ingest_es_bulk

LINE = b'{"end_time":1764740400,"start_time":1764740100,"action":"deny","dest_port":5432,"source_ip":"10.0.0.1"}'
OTHER = b'{"end_time":1764740401,"action":"allow","dest_port":443}'
HASH_KEY = "hash:" + hashlib.blake2b(LINE, digest_size=16).hexdigest()  # as the code before 0011 keyed it


def _bulk(*lines: bytes) -> bytes:
    return b"".join(lines)


def test_stored_keys_survive_the_upgrade_and_the_downgrade(db_url: str) -> None:
    config = alembic_config(db_url)
    command.downgrade(config, "0010_values_unlinked")  # db_url is at head
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            insert = sa.text(
                "INSERT INTO logstore_flows (end_time, action, record, ingest_key) VALUES (:t, :a, :r, :k)"
            )
            conn.execute(insert, {"t": 1764740400, "a": "deny", "r": LINE.decode(), "k": HASH_KEY})
            conn.execute(insert, {"t": 1764740401, "a": "allow", "r": OTHER.decode(), "k": "id:f-1"})
            conn.execute(insert, {"t": 1764740402, "a": "allow", "r": OTHER.decode(), "k": None})
        command.upgrade(config, "head")
        engine.dispose()  # SQLite: a pooled connection keeps the schema it read
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, ingest_key, ingest_hash FROM logstore_flows ORDER BY id").all()
        expected_hash = (
            int(HASH_KEY[5:21], 16) - (1 << 64) if int(HASH_KEY[5:21], 16) >= 1 << 63 else int(HASH_KEY[5:21], 16)
        )
        assert [tuple(r) for r in rows] == [(1, None, expected_hash), (2, "id:f-1", None), (3, None, None)]
        body = _bulk(
            b'{"index":{"_index":"flows"}}\n',
            LINE,
            b"\n",  # stored before the upgrade: a duplicate
            b'{"create":{"_index":"flows","_id":"f-1"}}\n',
            OTHER,
            b"\n",  # its _id is known: a conflict
            b'{"index":{"_index":"flows"}}\n',
            OTHER,
            b"\n",  # new (record 3 had no key)
        )
        answer = ingest_es_bulk(engine, body, default_index=None, patterns=IndexPatterns())
        items = [next(iter(item.values())) for item in answer["items"]]
        assert [(item["status"], item.get("result")) for item in items] == [
            (200, "noop"),
            (409, None),
            (201, "created"),
        ]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM logstore_flows").scalar() == 4
        command.downgrade(config, "0010_values_unlinked")
        engine.dispose()
        inspector = sa.inspect(engine)
        assert "ingest_hash" not in {c["name"] for c in inspector.get_columns("logstore_flows")}
        indexes = {i["name"]: i for i in inspector.get_indexes("logstore_flows")}
        assert indexes["ix_logstore_flows_ingest_key"]["unique"]
        assert indexes["ix_logstore_flows_end_time"]["column_names"] == ["end_time"]
        with engine.connect() as conn:
            keys = conn.exec_driver_sql("SELECT id, ingest_key FROM logstore_flows ORDER BY id").all()
        assert [tuple(k) for k in keys][:3] == [(1, HASH_KEY[:21]), (2, "id:f-1"), (3, None)]
        assert keys[3][1].startswith("hash:") and len(keys[3][1]) == 21
        command.upgrade(config, "head")  # and up again: the keys move back
        engine.dispose()
        with engine.connect() as conn:
            assert (
                conn.exec_driver_sql("SELECT COUNT(*) FROM logstore_flows WHERE ingest_hash IS NOT NULL").scalar() == 2
            )
    finally:
        engine.dispose()


def test_more_keys_than_one_chunk_all_move(db_url: str) -> None:
    """The keys move in chunks of 10,000 rows in id order (never the whole store in memory): every one moves."""
    config = alembic_config(db_url)
    command.downgrade(config, "0010_values_unlinked")
    engine = make_engine(db_url)
    count = 10_050
    try:
        with engine.begin() as conn:
            insert = sa.text(
                "INSERT INTO logstore_flows (end_time, action, record, ingest_key) VALUES (:t, 'deny', '{}', :k)"
            )
            keys = ["hash:" + hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(count)]
            conn.execute(insert, [{"t": 1764740400 + i, "k": key} for i, key in enumerate(keys)])
        command.upgrade(config, "head")
        engine.dispose()
        with engine.connect() as conn:
            moved = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM logstore_flows WHERE ingest_hash IS NOT NULL AND ingest_key IS NULL"
            ).scalar()
        assert moved == count
        command.downgrade(config, "0010_values_unlinked")
        engine.dispose()
        with engine.connect() as conn:
            back = [r[0] for r in conn.exec_driver_sql("SELECT ingest_key FROM logstore_flows ORDER BY id")]
        assert back == [key[:21] for key in keys]
        command.upgrade(config, "head")
    finally:
        engine.dispose()
