"""The engine runtime is built once by ``create_app`` from its settings and injected (issue 16.2): no
route builds another from the environment, and each app's metrics live in its own registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.deps import Services
from api.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)


def _audit(user: str, at: datetime) -> dict[str, object]:
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"id-{user}",
        "stage": "ResponseComplete",
        "requestURI": "/apis/projectcalico.org/v3/globalnetworkpolicies/p",
        "verb": "delete",
        "user": {"username": user},
        "objectRef": {"resource": "globalnetworkpolicies", "name": "p", "apiGroup": "projectcalico.org"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": at.isoformat().replace("+00:00", "Z"),
    }


def test_a_custom_service_factory_keeps_the_configured_runtime(sqlite_url: str) -> None:
    seen: list[Services] = []

    def factory(services: Services) -> list[object]:
        seen.append(services)
        return []

    registry = CollectorRegistry()
    settings = Settings(database_url=sqlite_url, bucket_cap=7)
    app = create_app(settings, registry=registry, service_factory=factory)  # type: ignore[arg-type]
    with TestClient(app) as client:
        runtime = app.state.services.runtime
        assert seen[0].runtime is runtime and runtime.settings is settings
        lines = "".join(json.dumps(_audit(f"user-{i}", NOW - timedelta(seconds=30 + i))) + "\n" for i in range(10))
        assert client.post("/datasets/audit/_bulk", content=lines).json()["ingested"] == 10
        assert client.get("/ui").status_code == 200  # used to build a second runtime from the environment
        alert = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalAlert",
            "metadata": {"name": "deletes"},
            "spec": {
                "description": "deletes by ${user.username}",
                "severity": 50,
                "dataSet": "audit",
                "query": "verb=delete",
                "aggregateBy": ["user.username"],
                "metric": "count",
                "condition": "gt",
                "threshold": 0,
            },
        }
        dry = client.post("/globalalerts/test", params={"at": NOW.isoformat()}, json=alert)
        assert dry.status_code == 422, dry.text
        assert "more than 7 aggregation buckets" in dry.json()["message"]
        assert app.state.services.runtime is runtime
        # The engine's metrics are this app's, in its registry (not the process-wide one).
        assert registry.get_sample_value("policywatch_evaluator_alerts") == 0.0


def test_two_apps_in_one_process_have_their_own_metrics(sqlite_url: str) -> None:
    first = create_app(Settings(database_url=sqlite_url), service_factory=lambda _s: [])
    second = create_app(Settings(database_url=sqlite_url), service_factory=lambda _s: [])
    assert first.state.services.runtime is not second.state.services.runtime
    assert first.state.services.runtime.metrics is not second.state.services.runtime.metrics
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/globalalerts")
        text = two.get("/metrics").text
        assert 'policywatch_evaluator_http_requests_total{code="200",method="GET",route="/globalalerts"}' not in text
        assert "process_cpu_seconds_total" in text
