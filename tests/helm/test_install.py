"""The chart installed with the real helm into the real kube-apiserver of the ``kube_cluster`` fixture.

There is no kubelet, so no pod runs; but every object goes through the API server's validation and admission,
is stored, and .Capabilities and ``lookup`` are the cluster's. The Prometheus Operator's CRDs (v0.93.0, vendored
under tests/fixtures/prometheus-operator) are installed for the tests that need them and removed afterwards.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.assets import CHART_DIR, RULES_FILE
from tests.fixtures.helm import Helm, HelmFailed
from tests.fixtures.kube import KubeCluster
from tests.fixtures.kubeschema import crd_files

SCENARIOS = sorted(CHART_DIR.glob("ci/*-values.yaml"))
MONITORING = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
OPERATOR_CRDS = ["servicemonitors", "podmonitors", "prometheusrules"]


@pytest.fixture
def helm(kube_cluster: KubeCluster) -> Iterator[Helm]:
    client = Helm(kubeconfig=kube_cluster.kubeconfig)
    try:
        yield client
    finally:
        client.cleanup()


def new_namespace(cluster: KubeCluster) -> str:
    """A fresh namespace per test (the test apiserver never deletes namespaces: no controller-manager)."""
    name = f"pw-helm-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", name)
    return name


def served_operator_kinds(cluster: KubeCluster) -> set[str]:
    out = cluster.kubectl("api-resources", "--api-group=monitoring.coreos.com", "-o", "name", check=False).stdout
    return {line.split(".", 1)[0] for line in out.split()}


def wait_operator_kinds(cluster: KubeCluster, expected: set[str]) -> None:
    deadline = time.monotonic() + 30
    while served_operator_kinds(cluster) != expected:
        assert time.monotonic() < deadline, f"discovery never showed {expected or 'no'} monitoring.coreos.com kinds"
        time.sleep(0.5)


def install_operator_crds(cluster: KubeCluster) -> None:
    for path in crd_files():
        cluster.kubectl("apply", "--server-side", "-f", str(path))
    for plural in OPERATOR_CRDS:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.monitoring.coreos.com", "--timeout=30s")
    wait_operator_kinds(cluster, set(OPERATOR_CRDS))


def remove_operator_crds(cluster: KubeCluster) -> None:
    names = [f"crd/{plural}.monitoring.coreos.com" for plural in OPERATOR_CRDS]
    cluster.kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=60s", *names)
    wait_operator_kinds(cluster, set())


@pytest.fixture(scope="module")
def operator_crds(kube_cluster: KubeCluster) -> Iterator[None]:
    install_operator_crds(kube_cluster)
    try:
        yield
    finally:
        remove_operator_crds(kube_cluster)


def get(cluster: KubeCluster, namespace: str, *what: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("-n", namespace, "get", ",".join(what), "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def names(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(i["kind"], i["metadata"]["name"]) for i in items}


def write_token(cluster: KubeCluster, namespace: str) -> str:
    [secret] = [
        s for s in get(cluster, namespace, "secrets") if s["metadata"]["name"] == "pw-policywatch-evaluator-tokens"
    ]
    return base64.b64decode(secret["data"]["write-tokens"]).decode()


def release(helm: Helm, verb: str, namespace: str, values: dict[str, Any], *extra: str) -> dict[str, Any]:
    out = helm.run(
        verb, "pw", str(CHART_DIR), "--namespace", namespace, "-o", "json", "-f", "-", *extra,
        input_text=yaml.safe_dump(values),
    )  # fmt: skip
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_install_gates_monitors_on_the_cluster_and_upgrades_keep_the_generated_token(
    kube_cluster: KubeCluster, helm: Helm
) -> None:
    had_crds = bool(served_operator_kinds(kube_cluster))  # another test's fixture may have installed them
    remove_operator_crds(kube_cluster)
    namespace = new_namespace(kube_cluster)
    try:
        installed = release(helm, "install", namespace, MONITORING)
        assert installed["info"]["status"] == "deployed"
        notes = installed["info"]["notes"]
        assert "SKIPPED: PrometheusRule, ServiceMonitor: the cluster does not serve monitoring.coreos.com/v1" in notes
        stored = names(get(kube_cluster, namespace, "deployments", "daemonsets", "services", "secrets", "sa"))
        assert stored >= {
            ("Deployment", "pw-policywatch-evaluator"),
            ("DaemonSet", "pw-policywatch-collector"),
            ("Service", "pw-policywatch-evaluator"),
            ("Secret", "pw-policywatch-evaluator-tokens"),
            ("ServiceAccount", "pw-policywatch-collector"),
            ("ServiceAccount", "pw-policywatch-evaluator"),
        }
        assert ("Service", "pw-policywatch-collector") not in stored  # it only serves the ServiceMonitor
        token = write_token(kube_cluster, namespace)
        assert len(token) == 40 and token.isalnum()

        install_operator_crds(kube_cluster)
        upgraded = release(helm, "upgrade", namespace, MONITORING)
        assert upgraded["version"] == 2
        assert "ServiceMonitors created" in upgraded["info"]["notes"] and "SKIPPED" not in upgraded["info"]["notes"]
        monitors = get(kube_cluster, namespace, "servicemonitors.monitoring.coreos.com")
        assert names(monitors) == {
            ("ServiceMonitor", "pw-policywatch-collector"),
            ("ServiceMonitor", "pw-policywatch-evaluator"),
        }
        [rule] = get(kube_cluster, namespace, "prometheusrules.monitoring.coreos.com")
        assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
        assert ("Service", "pw-policywatch-collector") in names(get(kube_cluster, namespace, "services"))
        # lookup found the Secret: the generated token survived the upgrade.
        assert write_token(kube_cluster, namespace) == token
        helm.run("upgrade", "pw", str(CHART_DIR), "--namespace", namespace, "--reuse-values")
        assert write_token(kube_cluster, namespace) == token
    finally:
        helm.run("uninstall", "pw", "--namespace", namespace, "--wait=false")
        (install_operator_crds if had_crds else remove_operator_crds)(kube_cluster)
    assert get(kube_cluster, namespace, "deployments", "daemonsets", "secrets") == []


@pytest.mark.usefixtures("operator_crds")
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_ci_scenario_installs(kube_cluster: KubeCluster, helm: Helm, path: Path) -> None:
    """A real `helm install` of each scenario: every object validated and admitted by the API server
    (ServiceMonitor/PodMonitor/PrometheusRule by the real CRDs' schemas) and stored; then uninstalled."""
    namespace = new_namespace(kube_cluster)
    kube_cluster.kubectl("create", "namespace", "monitoring", check=False)  # full-values puts dashboards there
    scenario = yaml.safe_load(path.read_text()) or {}
    try:
        out = helm.run("install", "pw", str(CHART_DIR), "--namespace", namespace, "-o", "json", "-f", str(path))
    except HelmFailed as exc:
        pytest.fail(f"{path.name}: {exc.stderr}")
    try:
        manifest = [d for d in yaml.safe_load_all(json.loads(out)["manifest"]) if d]
        kinds = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "PrometheusRule": "prometheusRule"}
        expected = {kind for kind, key in kinds.items() if scenario.get(key, {}).get("enabled")}
        assert {d["kind"] for d in manifest} & set(kinds) == expected
        for doc in manifest:
            where = doc["metadata"].get("namespace", namespace)
            got = kube_cluster.kubectl("-n", where, "get", doc["kind"], doc["metadata"]["name"], "-o", "json")
            stored = json.loads(got.stdout)
            assert stored["metadata"]["labels"]["app.kubernetes.io/instance"] == "pw"
            if doc["kind"] in {"Deployment", "DaemonSet"}:
                [container] = stored["spec"]["template"]["spec"]["containers"]
                [rendered] = doc["spec"]["template"]["spec"]["containers"]
                assert (container["args"], container["ports"]) == (rendered["args"], rendered["ports"])
    finally:
        helm.run("uninstall", "pw", "--namespace", namespace)


def test_the_api_server_refuses_what_the_schema_lets_through(kube_cluster: KubeCluster, helm: Helm) -> None:
    """extraVolumes items are passed through unchecked by the chart: the API server refuses a bad one, naming it,
    and helm reports the install failed."""
    namespace = new_namespace(kube_cluster)
    bad = {"collector": {"enabled": False}, "evaluator": {"extraVolumes": [{"name": "x", "hostPath": {"path": ""}}]}}
    with pytest.raises(HelmFailed) as failed:
        release(helm, "install", namespace, bad)
    assert "spec.template.spec.volumes[2].hostPath.path: Required value" in failed.value.stderr
    assert get(kube_cluster, namespace, "deployments") == []
