"""The Elasticsearch-compatible ingest API as shippers use it: probes, ``_bulk`` items, gzip, retries, auth."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.db import migrate
from tests.api.support import make_client
from tests.ingest.helpers import DNS_LINE, FLOW_LINE, count, es_bulk, ndjson, recent_flow

NDJSON = {"Content-Type": "application/x-ndjson"}


def test_probes_answer_as_elasticsearch_8(client: TestClient) -> None:
    root = client.get("/")
    assert root.status_code == 200 and root.headers["x-elastic-product"] == "Elasticsearch"
    assert root.json()["version"]["number"].startswith("8.") and root.json()["tagline"] == "You Know, for Search"
    assert client.head("/").status_code == 200
    assert client.get("/_cluster/health").json()["status"] == "green"
    assert client.get("/_cat/health").text.split()[3] == "green"
    assert client.head("/_index_template/logstash").status_code == 404
    assert client.put("/_index_template/logstash", json={"index_patterns": ["logstash-*"]}).json() == {
        "acknowledged": True
    }
    assert client.head("/_index_template/logstash").status_code == 200
    assert client.get("/_index_template/logstash").json()["index_templates"][0]["name"] == "logstash"
    assert client.put("/_template/fluentd", json={}).status_code == 200
    assert client.get("/_license").json()["license"]["status"] == "active"
    assert client.get("/_xpack").json()["features"]["ilm"]["available"] is False
    node = next(iter(client.get("/_nodes/http").json()["nodes"].values()))
    assert node["http"]["publish_address"] == "testserver"  # the address the client used


def test_calico_index_names_pick_the_data_set_and_items_say_what_happened(
    client: TestClient, engine: sa.Engine
) -> None:
    body = ndjson(
        [
            {"index": {"_index": "tigera_secure_ee_flows.cluster.20251203", "_type": "_doc"}},
            FLOW_LINE,
            {"create": {"_index": "tigera_secure_ee_dns.cluster.20251203"}},
            DNS_LINE,
            {"index": {"_index": "logs-generic-default"}},
            FLOW_LINE,
            {"index": {"_index": "flows"}},
            json.dumps({**json.loads(FLOW_LINE), "dest_port": "postgres"}),
            {"update": {"_index": "flows", "_id": "1"}},
            {"doc": {"action": "allow"}},
            {"delete": {"_index": "flows", "_id": "1"}},
            {"index": {"_index": "flows"}},
            "{not json",
        ]
    )
    response = client.post("/_bulk", content=body, headers=NDJSON)
    assert response.status_code == 200 and response.headers["x-elastic-product"] == "Elasticsearch"
    answer = response.json()
    assert answer["errors"] is True and isinstance(answer["took"], int)
    statuses = [(action, item["status"]) for entry in answer["items"] for action, item in entry.items()]
    assert statuses == [
        ("index", 201),
        ("create", 201),
        ("index", 404),
        ("index", 400),
        ("update", 400),
        ("delete", 400),
        ("index", 400),
    ]
    items = [next(iter(entry.values())) for entry in answer["items"]]
    assert items[0]["result"] == "created" and items[0]["_index"] == "tigera_secure_ee_flows.cluster.20251203"
    assert items[2]["error"]["type"] == "index_not_found_exception"
    assert "logs-generic-default" in items[2]["error"]["reason"]
    assert items[3]["error"]["type"] == "mapper_parsing_exception" and "[dest_port]" in items[3]["error"]["reason"]
    assert items[6]["error"]["type"] == "mapper_parsing_exception"
    assert (count(engine, "flows"), count(engine, "dns"), count(engine, "audit")) == (1, 1, 0)
    # The index in the path is the default _index; audit indices of Calico go to audit.
    path = client.post("/tigera_secure_ee_flows.cluster.20251203/_bulk", content=ndjson([{"index": {}}, recent_flow()]))
    assert path.json()["errors"] is False and count(engine, "flows") == 2


def test_a_retried_batch_stores_nothing_twice(client: TestClient, engine: sa.Engine) -> None:
    flows = [recent_flow(source_port=port) for port in range(40000, 40050)]
    body = es_bulk("tigera_secure_ee_flows.cluster.20251203", flows)
    first = client.post("/_bulk", content=body, headers=NDJSON).json()
    assert {next(iter(i.values()))["status"] for i in first["items"]} == {201}
    again = client.post("/_bulk", content=body, headers=NDJSON).json()  # the shipper timed out and resends
    assert again["errors"] is False
    assert {next(iter(i.values()))["result"] for i in again["items"]} == {"noop"}
    assert [next(iter(i.values()))["_id"] for i in again["items"]] == [
        next(iter(i.values()))["_id"] for i in first["items"]
    ]
    assert count(engine, "flows") == 50
    # _id honoured: index replaces, create of a known _id conflicts (409), as Elasticsearch does.
    with_id = ndjson(
        [
            {"index": {"_index": "flows", "_id": "f-1"}},
            recent_flow(num_flows=1),
            {"index": {"_index": "flows", "_id": "f-1"}},
            recent_flow(num_flows=2),
            {"create": {"_index": "flows", "_id": "f-1"}},
            recent_flow(num_flows=3),
        ]
    )
    items = [next(iter(i.values())) for i in client.post("/_bulk", content=with_id).json()["items"]]
    assert [(i["status"], i.get("result")) for i in items] == [(201, "created"), (200, "updated"), (409, None)]
    assert items[2]["error"]["type"] == "version_conflict_engine_exception"
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT num_flows FROM logstore_flows WHERE ingest_key = 'id:f-1'")).all()
    assert rows == [(2,)]
    assert count(engine, "flows") == 51


def test_a_malformed_action_line_stores_nothing(client: TestClient, engine: sa.Engine) -> None:
    body = ndjson([{"index": {"_index": "flows"}}, recent_flow(), "[1, 2]", recent_flow()])
    response = client.post("/_bulk", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "illegal_argument_exception" and error["reason"].startswith("line 3: malformed action")
    missing = client.post("/_bulk", content=ndjson([{"index": {"_index": "flows"}}]))
    assert missing.status_code == 400 and "no document line" in missing.json()["error"]["reason"]
    assert count(engine, "flows") == 0


def test_gzip_and_deflate_bodies_and_a_zip_bomb(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    migrate(url)
    body = es_bulk("flows", [recent_flow(source_port=p) for p in range(1, 4)])
    with make_client(url, ingest_max_bytes=1024 * 1024) as client:
        zipped = client.post("/_bulk", content=gzip.compress(body), headers={"Content-Encoding": "gzip"})
        assert zipped.status_code == 200 and len(zipped.json()["items"]) == 3
        deflated = zlib.compress(es_bulk("flows", [recent_flow(source_port=9)]))
        assert client.post("/_bulk", content=deflated, headers={"Content-Encoding": "deflate"}).status_code == 200
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        raw_deflate = raw.compress(es_bulk("flows", [recent_flow(source_port=10)])) + raw.flush()
        assert client.post("/_bulk", content=raw_deflate, headers={"Content-Encoding": "deflate"}).status_code == 200
        plain = client.post(
            "/datasets/flows/_bulk", content=gzip.compress(ndjson([recent_flow(source_port=11)])),
            headers={"Content-Encoding": "gzip"},
        )  # fmt: skip
        assert plain.status_code == 200 and plain.json()["ingested"] == 1
        # 128 MiB of spaces in a 128 KiB gzip: refused as it inflates past the limit, long before 128 MiB.
        bomb = gzip.compress(b" " * (128 << 20), compresslevel=9)
        assert len(bomb) < 256 * 1024
        refused = client.post("/_bulk", content=bomb, headers={"Content-Encoding": "gzip"})
        assert refused.status_code == 413 and "inflates beyond 1048576 bytes" in refused.json()["error"]["reason"]
        refused = client.post("/datasets/flows/_bulk", content=bomb, headers={"Content-Encoding": "gzip"})
        assert refused.status_code == 413
        corrupt = client.post("/_bulk", content=gzip.compress(body)[:-12], headers={"Content-Encoding": "gzip"})
        assert corrupt.status_code == 400
        unknown = client.post("/_bulk", content=body, headers={"Content-Encoding": "br"})
        assert unknown.status_code == 415 and "gzip, deflate" in unknown.json()["error"]["reason"]
        # Bulk paths take bulk-sized bodies; the other routes keep the general limit (1 MiB).
        assert client.post("/globalalerts", content=b" " * (2 << 20)).status_code == 413


def test_basic_auth_with_the_token_as_password(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    migrate(url)
    write, read = "w" * 24, "r" * 24
    with make_client(url, write_tokens=(write,), read_tokens=(read,)) as client:
        body = es_bulk("flows", [recent_flow()])

        def basic(user: str, password: str) -> dict[str, str]:
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

        assert client.post("/_bulk", content=body).status_code == 401
        assert "Basic" in client.post("/_bulk", content=body).headers["www-authenticate"]
        assert client.post("/_bulk", content=body, headers=basic("elastic", "wrong-token-xxxxxxxx")).status_code == 401
        assert client.post("/_bulk", content=body, headers=basic("fluentbit", read)).status_code == 403
        assert client.get("/", headers=basic("fluentbit", read)).status_code == 200
        assert client.post("/_bulk", content=body, headers=basic("fluentbit", write)).status_code == 200
        bearer = client.post("/_bulk", content=body, headers={"Authorization": f"Bearer {write}"})
        assert bearer.status_code == 200 and bearer.json()["items"][0]["index"]["result"] == "noop"
        assert client.get("/globalalerts", headers=basic("any", read)).status_code == 200
        garbage = client.post("/_bulk", content=body, headers={"Authorization": "Basic %%%"})
        assert garbage.status_code == 401


def test_the_document_api_for_shippers_that_send_one_at_a_time(client: TestClient, engine: sa.Engine) -> None:
    pretty = json.dumps(recent_flow(source_port=7), indent=2)
    created = client.post("/tigera_secure_ee_flows.cluster.x/_doc", content=pretty)
    assert created.status_code == 201 and created.json()["result"] == "created"
    assert client.post("/tigera_secure_ee_flows.cluster.x/_doc", content=pretty).json()["result"] == "noop"
    assert client.put("/flows/_doc/doc-1", json=recent_flow(source_port=8)).status_code == 201
    assert client.put("/flows/_doc/doc-1", json=recent_flow(source_port=9)).json()["result"] == "updated"
    conflict = client.put("/flows/_create/doc-1", json=recent_flow(source_port=10))
    assert conflict.status_code == 409 and conflict.json()["error"]["type"] == "version_conflict_engine_exception"
    bad = client.post("/flows/_doc", json={**recent_flow(), "dest_port": "x"})
    assert bad.status_code == 400 and "[dest_port]" in bad.json()["error"]["reason"]
    assert client.post("/nowhere/_doc", json=recent_flow()).status_code == 404
    assert client.post("/flows/_doc", content=b"{oops").status_code == 400
    assert count(engine, "flows") == 2
