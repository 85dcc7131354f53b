"""Generated Calico flow and DNS logs and Kubernetes audit events, in their Elasticsearch document shape."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from evaluator.events import rfc3339


def flow(end: datetime, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "start_time": rfc3339(end - timedelta(minutes=5)),
        "end_time": rfc3339(end),
        "action": "allow",
        "bytes_in": 1000,
        "bytes_out": 500,
        "dest_ip": "10.0.1.10",
        "dest_name": "db-0",
        "dest_name_aggr": "db-*",
        "dest_namespace": "prod",
        "dest_port": 5432,
        "dest_type": "wep",
        "dest_labels": {"labels": ["application=postgres", "tier=data"]},
        "reporter": "dst",
        "num_flows": 1,
        "num_flows_completed": 1,
        "num_flows_started": 1,
        "http_requests_allowed_in": 0,
        "http_requests_denied_in": 0,
        "packets_in": 10,
        "packets_out": 8,
        "proto": "tcp",
        "policies": {"all_policies": ["0|default|prod/default.allow-db|allow"]},
        "source_ip": "203.0.113.7",
        "source_name": "-",
        "source_name_aggr": "pub",
        "source_namespace": "-",
        "source_port": 40123,
        "source_type": "net",
        "source_labels": {"labels": []},
        "original_source_ips": [],
        "num_original_source_ips": 0,
    }
    record.update(overrides)
    return record


def dns(end: datetime, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "start_time": rfc3339(end - timedelta(minutes=5)),
        "end_time": rfc3339(end),
        "count": 1,
        "client_name": "web-7d9f-abc",
        "client_name_aggr": "web-7d9f-*",
        "client_namespace": "shop",
        "client_ip": "10.0.2.5",
        "client_labels": {"app": "web"},
        "servers": [
            {
                "name": "coredns-1",
                "name_aggr": "coredns-*",
                "namespace": "kube-system",
                "ip": "10.96.0.10",
                "labels": {"k8s-app": "kube-dns"},
            }
        ],
        "qname": "api.example.com",
        "qclass": "IN",
        "qtype": "A",
        "rcode": "NoError",
        "rrsets": [{"name": "api.example.com", "type": "A", "class": "IN", "rdata": ["192.0.2.1"]}],
    }
    record.update(overrides)
    return record


def audit(at: datetime, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": f"id-{at.timestamp():.0f}",
        "stage": "ResponseComplete",
        "requestURI": "/apis/projectcalico.org/v3/globalnetworkpolicies/deny-all",
        "verb": "delete",
        "user": {"username": "alice", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.3.4"],
        "objectRef": {
            "resource": "globalnetworkpolicies",
            "name": "deny-all",
            "apiGroup": "projectcalico.org",
            "apiVersion": "v3",
        },
        "responseStatus": {"code": 200},
        "responseObject": {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy"},
        "requestReceivedTimestamp": rfc3339(at),
        "stageTimestamp": rfc3339(at + timedelta(milliseconds=20)),
    }
    record.update(overrides)
    return record
