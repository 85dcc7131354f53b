"""Real log documents (Calico Enterprise flow and DNS log lines, kube-apiserver audit events) and store counts."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from evaluator.logstore import table_for

# A flows.log line as Calico Enterprise's Felix writes it (fluentd ships these documents unchanged).
FLOW_LINE = (
    '{"start_time":1764740100,"end_time":1764740400,"source_ip":"-","source_name":"-",'
    '"source_name_aggr":"frontend-6d8f9c-*","source_namespace":"shop","nat_outgoing_ports":null,"source_port":null,'
    '"source_type":"wep","source_labels":{"labels":["app=frontend","pod-template-hash=6d8f9c"]},"dest_ip":"-",'
    '"dest_name":"-","dest_name_aggr":"db-*","dest_namespace":"shop","dest_service_namespace":"shop",'
    '"dest_service_name":"db","dest_service_port":"tcp-db","dest_service_port_num":5432,"dest_domains":null,'
    '"dest_port":5432,"dest_type":"wep","dest_labels":{"labels":["app=db"]},"proto":"tcp","action":"deny",'
    '"reporter":"dst","policies":{"all_policies":["0|shop|shop.default-deny|deny|-1"]},"bytes_in":0,'
    '"bytes_out":0,"num_flows":3,"num_flows_started":3,"num_flows_completed":0,"packets_in":9,"packets_out":0,'
    '"http_requests_allowed_in":0,"http_requests_denied_in":0,"process_name":"-","num_process_names":0,'
    '"process_id":"-","num_process_ids":0,"process_args":["-"],"num_process_args":0,'
    '"original_source_ips":null,"num_original_source_ips":0,"tcp_mean_send_congestion_window":0,'
    '"tcp_min_send_congestion_window":0,"tcp_mean_smooth_rtt":0,"tcp_max_smooth_rtt":0,"tcp_mean_min_rtt":0,'
    '"tcp_max_min_rtt":0,"tcp_mean_mss":0,"tcp_min_mss":0,"tcp_total_retransmissions":0,'
    '"tcp_lost_packets":0,"tcp_unrecovered_to":0,"host":"worker-1"}'
)
# A dns.log line of Calico Enterprise.
DNS_LINE = (
    '{"start_time":"2025-12-03T05:35:00.123456789Z","end_time":"2025-12-03T05:40:00.123456789Z","type":"log",'
    '"count":4,"client_name":"-","client_name_aggr":"frontend-6d8f9c-*","client_namespace":"shop",'
    '"client_ip":null,"client_labels":{"app":"frontend","pod-template-hash":"6d8f9c"},'
    '"servers":[{"name":"coredns-5d78c9869d-x2v7q","name_aggr":"coredns-5d78c9869d-*",'
    '"namespace":"kube-system","ip":"10.244.0.3","labels":{"k8s-app":"kube-dns"}}],'
    '"qname":"api.stripe.com","qclass":"IN","qtype":"A","rcode":"NoError",'
    '"rrsets":[{"name":"api.stripe.com","class":"IN","type":"A","rdata":["198.51.100.23"]}],'
    '"latency":{"count":4,"mean":"1.2ms","max":"2.3ms"},"latency_count":4,"latency_mean":1200000,'
    '"latency_max":2300000,"host":"worker-1"}'
)


def micro(moment: datetime) -> str:
    """RFC 3339 with microseconds, as kube-apiserver writes audit timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_event(at: datetime, *, user: str, verb: str, resource: str, name: str, code: int = 200) -> dict[str, Any]:
    """One audit.k8s.io/v1 Event as an item of the webhook's EventList (no per-item kind/apiVersion)."""
    namespaced = resource not in ("globalnetworkpolicies", "namespaces")
    event: dict[str, Any] = {
        "level": "Metadata",
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/shop/{resource}/{name}" if namespaced else f"/api/v1/{resource}/{name}",
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.3.4"],
        "userAgent": "kubectl/v1.33.0 (linux/amd64) kubernetes/60a317e",
        "objectRef": {"resource": resource, "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": micro(at),
        "stageTimestamp": micro(at + timedelta(microseconds=6512)),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
    }
    if namespaced:
        event["objectRef"]["namespace"] = "shop"
    return event


def event_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}


def ndjson(lines: list[Any]) -> bytes:
    return b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines)


def es_bulk(index: str, documents: list[Any], *, action: str = "index") -> bytes:
    lines: list[Any] = []
    for document in documents:
        lines += [{action: {"_index": index}}, document]
    return ndjson(lines)


def count(engine: sa.Engine, dataset: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table_for(dataset))).scalar_one())


def recent_flow(seconds_ago: int = 60, **overrides: Any) -> dict[str, Any]:
    """The real flow line with its times moved to now (and fields overridden)."""
    record: dict[str, Any] = json.loads(FLOW_LINE)
    end = int(datetime.now(UTC).timestamp()) - seconds_ago
    record.update(start_time=end - 300, end_time=end)
    record.update(overrides)
    return record
