"""``policywatch-evaluator --definitions=kubernetes`` against the real kube-apiserver, driven with the real kubectl:
GlobalAlerts applied with kubectl run and get their status written back; deleting one stops it; an object the
CRD schema lets through but our validation refuses is reported unhealthy; the REST API reads the cluster and
refuses writes with a pointer to kubectl."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.db import migrate
from api.settings import Settings
from devstack.services import free_port
from tests.api.support import EvaluatorProcess
from tests.evaluator.engine.engine_data import audit
from tests.fixtures.kube import REPO_ROOT, KubeCluster
from tests.kube.conftest import alert_yaml, status_of, unique, wait_for


def scheduled(evaluator: EvaluatorProcess, name: str) -> bool:
    """Whether the evaluator's scheduler holds a schedule row for the alert."""
    with sqlite3.connect(evaluator.tmp_path / "server.db") as db:
        return db.execute("SELECT 1 FROM alert_schedule WHERE alert = ?", (name,)).fetchone() is not None


def ingest_deletion(evaluator: EvaluatorProcess) -> None:
    line = json.dumps(audit(datetime.now(UTC) - timedelta(minutes=1))) + "\n"
    answer = httpx.post(f"{evaluator.url}/datasets/audit/_bulk", content=line, timeout=10)
    assert answer.status_code == 200 and answer.json()["ingested"] == 1, answer.text


def test_applied_alert_runs_and_its_status_shows_in_kubectl(
    crds: KubeCluster, kube_evaluator: EvaluatorProcess
) -> None:
    name = unique("kc-deletes")
    ingest_deletion(kube_evaluator)
    crds.kubectl("apply", "-f", "-", input_text=alert_yaml(name))

    status = wait_for(lambda: (s := status_of(crds, name)).get("lastEvent") and s, f"{name}'s status.lastEvent")
    assert status["healthy"] is True
    assert status["active"] is True
    assert status["executionState"] == "executed"
    assert status["errorConditions"] == []
    assert datetime.fromisoformat(status["lastExecuted"]) >= datetime.fromisoformat(status["lastEvent"])
    jsonpath = crds.kubectl("get", "globalalerts", name, "-o", "jsonpath={.status.healthy} {.status.lastExecuted}")
    assert jsonpath.stdout == f"true {status['lastExecuted']}"
    row = crds.kubectl("get", "globalalerts", name).stdout.splitlines()[1].split()
    assert row[:5] == [name, "audit", "70", "1m", "true"]

    events = httpx.get(f"{kube_evaluator.url}/events", params={"alert": name}, timeout=10).json()["items"]
    assert [e["time"] for e in events] == [status["lastEvent"]]
    assert events[0]["record"]["verb"] == "delete"
    served = httpx.get(f"{kube_evaluator.url}/globalalerts/{name}", timeout=10).json()
    assert served["status"]["lastExecuted"] == status["lastExecuted"]
    uid = crds.kubectl("get", "globalalert", name, "-o", "jsonpath={.metadata.uid}").stdout
    assert served["metadata"]["uid"] == uid

    assert scheduled(kube_evaluator, name)
    crds.kubectl("delete", "globalalert", name)
    wait_for(lambda: not scheduled(kube_evaluator, name), f"{name}'s schedule to be retired after kubectl delete")
    gone = httpx.get(f"{kube_evaluator.url}/globalalerts/{name}", timeout=10)
    assert gone.status_code == 404


def test_object_our_validation_refuses_is_reported_unhealthy(
    crds: KubeCluster, kube_evaluator: EvaluatorProcess
) -> None:
    name = unique("kc-invalid")
    # A string query passes the CRD's schema; the query language refuses an unknown key.
    crds.kubectl("apply", "-f", "-", input_text=alert_yaml(name, query="verb=delete AND colour=blue"))
    try:
        status = wait_for(lambda: (s := status_of(crds, name)).get("executionState") and s, f"{name}'s status")
        assert status["healthy"] is False
        assert status["active"] is False
        assert status["executionState"] == "invalid"
        messages = [c["message"] for c in status["errorConditions"]]
        assert len(messages) == 1 and messages[0].startswith("spec.query:")
        assert "colour" in messages[0]
        assert {c["type"] for c in status["errorConditions"]} == {"SpecInvalid"}
        assert not scheduled(kube_evaluator, name)

        # Fixed with kubectl: it runs, and the scheduler's status replaces the complaint.
        crds.kubectl("apply", "-f", "-", input_text=alert_yaml(name, query="verb=delete"))
        fixed = wait_for(lambda: (s := status_of(crds, name)).get("healthy") and s, f"{name} healthy once fixed")
        assert fixed["executionState"] in ("pending", "executed")
        assert fixed["errorConditions"] == []
        assert scheduled(kube_evaluator, name)
    finally:
        crds.kubectl("delete", "globalalert", name, "--ignore-not-found")


def test_rest_api_reads_the_cluster_and_refuses_writes(crds: KubeCluster, kube_evaluator: EvaluatorProcess) -> None:
    alert, other, template = unique("kc-rest"), unique("kc-rest-other"), unique("kc-rest-template")
    crds.kubectl("apply", "-f", "-", input_text=alert_yaml(alert) + "---\n" + alert_yaml(other))
    crds.kubectl("apply", "-f", "-", input_text=alert_yaml(template, kind="GlobalAlertTemplate"))
    api = kube_evaluator.url
    try:
        names = wait_for(
            lambda: (
                {alert, other}
                <= set(n := [i["metadata"]["name"] for i in httpx.get(f"{api}/globalalerts").json()["items"]])
                and n
            ),
            f"{alert} and {other} listed by the REST API",
        )
        assert names == sorted(names)
        first = httpx.get(f"{api}/globalalerts", params={"limit": 1}, timeout=10).json()
        second = httpx.get(f"{api}/globalalerts", params={"limit": 1, "continue": first["metadata"]["continue"]}).json()
        assert [first["items"][0]["metadata"]["name"], second["items"][0]["metadata"]["name"]] == names[:2]
        ctl = shutil.which("policywatchctl", path=str(REPO_ROOT / ".venv" / "bin")) or "policywatchctl"
        shown = subprocess.run(
            [ctl, "--server", api, "get", "globalalerts", "-o", "name"], capture_output=True, text=True, timeout=60
        )
        assert f"globalalert.projectcalico.org/{alert}" in shown.stdout.splitlines(), shown.stderr
        listed = httpx.get(f"{api}/apis/projectcalico.org/v3/globalalerttemplates", timeout=10).json()
        assert template in [i["metadata"]["name"] for i in listed["items"]]

        body = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalAlert",
            "metadata": {"name": alert},
            "spec": {"description": "changed", "severity": 10, "dataSet": "audit"},
        }
        for method, path in (("POST", "/globalalerts"), ("PUT", f"/globalalerts/{alert}")):
            answer = httpx.request(method, f"{api}{path}", json=body, timeout=10)
            assert answer.status_code == 405, answer.text
            assert answer.headers["allow"] == "GET"
            assert answer.json()["reason"] == "MethodNotAllowed"
            assert "kubectl apply" in answer.json()["message"]
        deleted = httpx.delete(f"{api}/globalalerts/{alert}", timeout=10)
        assert deleted.status_code == 405
        assert f"kubectl delete globalalert {alert}" in deleted.json()["message"]
        # nothing changed in the cluster
        assert crds.kubectl("get", "globalalert", alert, "-o", "jsonpath={.spec.severity}").stdout == "70"
    finally:
        crds.kubectl("delete", "globalalert", alert, other, "--ignore-not-found")
        crds.kubectl("delete", "globalalerttemplate", template, "--ignore-not-found")


def test_reads_before_the_first_list_are_503(tmp_path: Path) -> None:
    """Nothing listed from the cluster yet (here: no API server at all): the REST API says so, never an empty list."""
    kubeconfig = tmp_path / "kubeconfig"
    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    migrate(url)
    settings = Settings(database_url=url, definitions="kubernetes", kubeconfig=kubeconfig)
    app = create_app(settings, registry=CollectorRegistry(), service_factory=lambda _services: [])
    with TestClient(app) as client:
        for path in ("/globalalerts", "/globalalerts/any", "/apis/projectcalico.org/v3/globalalerttemplates"):
            answer = client.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["retry-after"] == "5"
            assert "not listed from the cluster yet" in answer.json()["message"]
