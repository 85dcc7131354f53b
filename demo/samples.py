"""The demo's GlobalAlert and the flow logs it runs over: Calico flow-log documents describing the denied traffic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from demo.topology import POLICY_DB

ALERT_NAME = "demo-denied-to-postgres"

GLOBAL_ALERT: dict[str, Any] = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "GlobalAlert",
    "metadata": {"name": ALERT_NAME},
    "spec": {
        "description": "${source_namespace}/${source_name_aggr} was denied ${sum} flows to postgres",
        "severity": 100,
        "dataSet": "flows",
        "period": "1m",
        "lookback": "10m",
        "query": "action=deny AND dest_port=5432",
        "aggregateBy": ["source_namespace", "source_name_aggr"],
        "field": "num_flows",
        "metric": "sum",
        "condition": "gt",
        "threshold": 0,
    },
}


def _flow(
    *, end: datetime, src: str, src_name: str, src_ns: str, action: str, port: int, flows: int, packets: int
) -> dict[str, Any]:
    start = end - timedelta(minutes=1)
    verdict = "deny" if action == "deny" else "allow"
    return {
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "end_time": end.isoformat().replace("+00:00", "Z"),
        "action": action,
        "bytes_in": 0,
        "bytes_out": packets * 92,
        "dest_ip": "10.77.0.2",
        "dest_name": "postgres-0",
        "dest_name_aggr": "postgres-*",
        "dest_namespace": "demo-db",
        "dest_port": port,
        "dest_type": "wep",
        "dest_labels": {"labels": ["app=postgres"]},
        "reporter": "dst",
        "num_flows": flows,
        "num_flows_completed": flows,
        "num_flows_started": flows,
        "packets_in": 0,
        "packets_out": packets,
        "proto": "udp",
        "policies": {
            "all_policies": [f"0|demo-db|{POLICY_DB if verdict == 'deny' else 'demo-db/allow-web'}|{verdict}|0"]
        },
        "source_ip": src,
        "source_name": src_name,
        "source_name_aggr": src_name.rsplit("-", 1)[0] + "-*",
        "source_namespace": src_ns,
        "source_port": 40000,
        "source_type": "wep",
        "source_labels": {"labels": [f"app={src_name.rsplit('-', 1)[0]}"]},
    }


def flow_logs(now: datetime | None = None) -> list[dict[str, Any]]:
    """Denied flows from the frontend sources to postgres (what the alert counts) and allowed ones (what it skips)."""
    end = (now or datetime.now(UTC)) - timedelta(seconds=30)
    return [
        _flow(
            end=end,
            src="10.77.0.1",
            src_name="frontend-7d9f-abcde",
            src_ns="demo-frontend",
            action="deny",
            port=5432,
            flows=12,
            packets=1500,
        ),
        _flow(
            end=end,
            src="10.77.0.11",
            src_name="frontend-7d9f-fghij",
            src_ns="demo-frontend",
            action="deny",
            port=5432,
            flows=3,
            packets=180,
        ),
        _flow(
            end=end,
            src="10.77.0.12",
            src_name="batch-5c4b-klmno",
            src_ns="demo-batch",
            action="deny",
            port=5432,
            flows=2,
            packets=120,
        ),
        _flow(
            end=end,
            src="10.77.0.11",
            src_name="frontend-7d9f-fghij",
            src_ns="demo-frontend",
            action="allow",
            port=8080,
            flows=40,
            packets=4000,
        ),
    ]


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
