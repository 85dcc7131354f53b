"""The demo's GlobalAlert: it runs over the flow records the collector ships (--flow-logs), not hand-made samples."""

from __future__ import annotations

from typing import Any

from demo.topology import DENIED_PORT

ALERT_NAME = "demo-denied-to-postgres"
FLOW_LOGS_FLUSH_INTERVAL = 5  # seconds: the collector's --flow-logs-flush-interval and the evaluator's setting

GLOBAL_ALERT: dict[str, Any] = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "GlobalAlert",
    "metadata": {"name": ALERT_NAME},
    "spec": {
        "description": "${sum} packets to ${dest_ip} port 5432 denied",
        "severity": 100,
        "dataSet": "flows",
        "period": "1m",
        "lookback": "10m",
        "query": f"action=deny AND dest_port={DENIED_PORT}",
        "aggregateBy": ["dest_ip"],
        "field": "packets_in",
        "metric": "sum",
        "condition": "gt",
        "threshold": 0,
    },
}
