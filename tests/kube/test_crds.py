"""The committed CRDs are the generated ones, and the real kube-apiserver accepts them and their objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from api.kube_controller import crds
from tests.fixtures.kube import KubeCluster

CRD_DIR = Path(__file__).resolve().parents[2] / "helm" / "policywatch" / "crds"
PLURALS = ["globalalerts", "globalalerttemplates"]


@pytest.mark.parametrize("plural", PLURALS)
def test_committed_crd_equals_generated(plural: str) -> None:
    committed = (CRD_DIR / f"{plural}.yaml").read_text(encoding="utf-8")
    assert committed == crds.render(plural), f"regenerate: python -m api.kube_controller.crds {plural}"


def test_schema_is_structural() -> None:
    """No anyOf/$ref/title left; optional fields nullable; every object node typed."""

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            assert not {"anyOf", "$ref", "$defs", "title", "default"} & node.keys(), path
            if "properties" in node:
                assert node.get("type") == "object", path
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    crd = crds.all_crds()["globalalerts"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    walk(schema, "openAPIV3Schema")
    # period and lookback have defaults in the spec model (5m / 10m): optional, typed, never required
    assert schema["properties"]["spec"]["properties"]["period"]["type"] == "string"
    assert sorted(schema["properties"]["spec"]["required"]) == ["dataSet", "description", "severity"]


def test_main_rejects_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert crds.main(["pods"]) == 2
    assert "globalalerts|globalalerttemplates" in capsys.readouterr().err


def _apply_crds(cluster: KubeCluster) -> None:
    for plural in PLURALS:
        cluster.kubectl("apply", "-f", str(CRD_DIR / f"{plural}.yaml"))
    for plural in PLURALS:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.projectcalico.org", "--timeout=30s")


def _alert(name: str, **spec: object) -> str:
    body = {"description": "denied flows", "severity": 50, "dataSet": "flows", "period": "5m", **spec}
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalAlert", "metadata": {"name": name}, "spec": body}
    return yaml.safe_dump(doc)


def test_apiserver_accepts_crds_and_objects(kube_cluster: KubeCluster) -> None:
    _apply_crds(kube_cluster)
    kube_cluster.kubectl("apply", "-f", "-", input_text=_alert("crd-accept", query="action=deny"))
    template = _alert("crd-template").replace("kind: GlobalAlert", "kind: GlobalAlertTemplate")
    kube_cluster.kubectl("apply", "-f", "-", input_text=template)

    table = kube_cluster.kubectl("get", "globalalerts", "crd-accept").stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "DATASET", "SEVERITY", "PERIOD", "HEALTHY", "LAST", "EXECUTED", "AGE"]
    assert table.splitlines()[1].split()[:4] == ["crd-accept", "flows", "50", "5m"]
    assert "crd-template" in kube_cluster.kubectl("get", "globalalerttemplates").stdout

    # status is a subresource: a write to the main resource ignores it, the status endpoint sets it.
    patch = json.dumps({"status": {"healthy": True, "executionState": "Running", "errorConditions": []}})
    kube_cluster.kubectl("patch", "globalalert", "crd-accept", "--type=merge", "-p", patch)
    got = json.loads(kube_cluster.kubectl("get", "globalalert", "crd-accept", "-o", "json").stdout)
    assert "status" not in got
    kube_cluster.kubectl("patch", "globalalert", "crd-accept", "--subresource=status", "--type=merge", "-p", patch)
    got = json.loads(kube_cluster.kubectl("get", "globalalert", "crd-accept", "-o", "json").stdout)
    assert got["status"]["healthy"] is True
    kube_cluster.kubectl("delete", "globalalert", "crd-accept")
    kube_cluster.kubectl("delete", "globalalerttemplate", "crd-template")


def test_apiserver_rejects_objects_outside_the_schema(kube_cluster: KubeCluster) -> None:
    _apply_crds(kube_cluster)
    bad = kube_cluster.kubectl("apply", "-f", "-", input_text=_alert("crd-bad", severity=0, dataSet="x"), check=False)
    assert bad.returncode != 0
    assert "spec.severity" in bad.stderr
    assert "spec.dataSet" in bad.stderr
    missing = kube_cluster.kubectl("get", "globalalert", "crd-bad", check=False)
    assert missing.returncode != 0
