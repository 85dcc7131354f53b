"""helm/policywatch rendered by the real `helm template` (v4, .venv/bin/helm) for each ci/ scenario, linted with
`helm lint --strict`, every manifest checked by kubernetes-validate --strict, and the manifests checked: structure,
labels and selectors, capabilities and mounts, Secrets, monitors, that the rule and dashboard files arrive
unchanged, and that bad or contradictory values stop helm with the message named."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import pytest
import yaml

from api.settings import Settings
from demo.assets import CHART_DIR, RULES_FILE, dashboard_files
from tests.fixtures.helm import PROMETHEUS_OPERATOR_APIS, HelmFailed, Rendered, lint, notes, render
from tests.fixtures.kubeschema import kubernetes_validate_errors, schema_errors

SCENARIOS = sorted(p.name for p in (CHART_DIR / "ci").glob("*-values.yaml"))
SELECTOR_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}


@cache
def rendered(scenario: str) -> Rendered:
    """A scenario as rendered for a cluster that serves the Prometheus Operator's API."""
    return render(values_files=[CHART_DIR / "ci" / scenario], api_versions=PROMETHEUS_OPERATOR_APIS)


@cache
def rendered_notes(scenario: str) -> str:
    return notes(values_files=[CHART_DIR / "ci" / scenario]).notes


def one(result: Rendered, kind: str, suffix: str = "") -> dict[str, Any]:
    return result.one(kind, suffix)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(scenario: str) -> None:
    out = lint(values_files=[CHART_DIR / "ci" / scenario])
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_passes_kubernetes_validate_strict(scenario: str) -> None:
    for doc in rendered(scenario).all():
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert schema_errors(doc) == [], where
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            assert kubernetes_validate_errors(doc) == [], where  # the library's own entry point agrees


def test_the_strict_validation_catches_unknown_fields_and_wrong_types() -> None:
    daemonset = copy.deepcopy(rendered("default-values.yaml").one("DaemonSet"))
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    assert schema_errors(daemonset) == [
        "spec.template.spec: Additional properties are not allowed ('hostNetwrok' was unexpected)"
    ]
    assert kubernetes_validate_errors(daemonset) != []
    monitor = copy.deepcopy(rendered("full-values.yaml").one("ServiceMonitor", "-collector"))
    monitor["spec"]["endpoints"][0]["interval"] = 30
    monitor["spec"]["endpoints"][0]["tlsConfig"]["insecure"] = True
    errors = schema_errors(monitor)
    assert "spec.endpoints.0.interval: 30 is not of type 'string'" in errors
    assert "spec.endpoints.0.tlsConfig: Additional properties are not allowed ('insecure' was unexpected)" in errors


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    [c] = containers
    return c


def env_map(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_is_well_formed(scenario: str) -> None:
    docs = rendered(scenario).all()
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        meta = doc["metadata"]
        assert meta["name"] and len(meta["name"]) <= 63
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "policywatch"
        assert labels["app.kubernetes.io/instance"] == "policywatch"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_match_pod_labels_and_leave_out_the_chart_version(scenario: str) -> None:
    result = rendered(scenario)
    for workload in result.find("DaemonSet") + result.find("Deployment"):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert set(selector) == SELECTOR_LABELS
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    for service in result.find("Service"):
        assert set(service["spec"]["selector"]) == SELECTOR_LABELS
    workloads = result.find("DaemonSet") + result.find("Deployment")
    for service in result.find("Service"):
        assert any(
            service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
            for w in workloads
        ), f"service {service['metadata']['name']} selects no pods"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_collector_daemonset(scenario: str) -> None:
    result = rendered(scenario)
    values = yaml.safe_load((CHART_DIR / "ci" / scenario).read_text()) or {}
    collector_values = values.get("collector", {})
    if collector_values.get("enabled", True) is False:
        assert result.find("DaemonSet") == []
        return
    ds = one(result, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["automountServiceAccountToken"] is False
    c = container(ds)
    ctx = c["securityContext"]
    assert ctx["privileged"] is False and ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    added = ctx["capabilities"]["add"]
    expected = ["BPF", "PERFMON", "NET_ADMIN"]
    if collector_values.get("namespaceRulesets", True):
        expected.append("SYS_ADMIN")
    if collector_values.get("legacyMemlock", False):
        expected.append("SYS_RESOURCE")
    assert added == expected
    # Kubernetes rejects allowPrivilegeEscalation: false next to SYS_ADMIN.
    assert ("SYS_ADMIN" in added) == ("allowPrivilegeEscalation" not in ctx)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in ("/sys/kernel/tracing", "/sys/kernel/btf", "/lib/modules", "/usr/src", "/tmp"):
        assert path in mounts
    assert ("/run/netns" in mounts) == ("SYS_ADMIN" in added)
    if "/run/netns" in mounts:
        assert mounts["/run/netns"]["mountPropagation"] == "HostToContainer"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        assert m["name"] in volumes
    port = collector_values.get("port", 9081)
    assert c["ports"][0]["containerPort"] == port
    assert env_map(c)["FELIX_PROMETHEUSREPORTERPORT"]["value"] == str(port)
    assert f"--port={port}" in c["args"]


def test_full_scenario_passes_every_collector_flag_and_tls() -> None:
    c = container(one(rendered("full-values.yaml"), "DaemonSet"))
    assert c["args"] == [
        "--port=9081",
        "--ttl=120",
        "--mark-mask=0x0ff0",
        "--map-size=32768",
        "--max-series=20000",
        "--drain-interval=2",
        "--tls-cert=/etc/policywatch/tls/tls.crt",
        "--tls-key=/etc/policywatch/tls/tls.key",
        "--tls-ca=/etc/policywatch/tls/ca.crt",
    ]
    assert c["resources"]["limits"]["memory"] == "512Mi"


def test_default_collector_keeps_the_collector_defaults() -> None:
    c = container(one(rendered("default-values.yaml"), "DaemonSet"))
    assert c["args"] == ["--port=9081", "--ttl=60"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_evaluator_reads_secrets_that_exist(scenario: str) -> None:
    result = rendered(scenario)
    values = yaml.safe_load((CHART_DIR / "ci" / scenario).read_text()) or {}
    evaluator = values.get("evaluator", {})
    existing = {
        evaluator.get("database", {}).get("existingSecret"),
        evaluator.get("auth", {}).get("existingSecret"),
        evaluator.get("opensearch", {}).get("existingSecret"),
    } - {None, ""}
    secrets = {s["metadata"]["name"]: s for s in result.find("Secret")}
    deployment = one(result, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = env_map(container(deployment))
    for name in ("POLICYWATCH_WRITE_TOKENS", "POLICYWATCH_READ_TOKENS"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        if ref["name"] in secrets:
            assert ref["key"] in secrets[ref["name"]]["stringData"]
        else:
            assert ref["name"] in existing
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] in secrets or ref["name"] in existing, e
    assert "--host=0.0.0.0" in container(deployment)["args"]


def test_default_evaluator_runs_on_sqlite_with_a_generated_token() -> None:
    result = rendered("default-values.yaml")
    deployment = one(result, "Deployment")
    env = env_map(container(deployment))
    assert env["POLICYWATCH_DATABASE_URL"]["value"].startswith("sqlite:////var/lib/policywatch/")
    assert deployment["spec"]["replicas"] == 1
    tokens = one(result, "Secret", "-tokens")["stringData"]
    assert len(tokens["write-tokens"]) == 40 and tokens["write-tokens"].isalnum()
    assert tokens["read-tokens"] == ""
    assert "WARNING: no database configured" in rendered_notes("default-values.yaml")
    kinds = {d["kind"] for d in result.all()}
    assert kinds == {"DaemonSet", "Deployment", "Service", "Secret", "ServiceAccount"}


def test_full_evaluator_uses_postgres_tokens_and_opensearch() -> None:
    result = rendered("full-values.yaml")
    deployment = one(result, "Deployment")
    env = env_map(container(deployment))
    assert deployment["spec"]["replicas"] == 2
    assert "value" not in env["POLICYWATCH_DATABASE_URL"]
    db = one(result, "Secret", "-database")["stringData"]
    assert db["database-url"].startswith("postgresql+psycopg://")
    tokens = one(result, "Secret", "-tokens")["stringData"]
    assert tokens == {"read-tokens": "read-token-0123456789abcdef", "write-tokens": "write-token-0123456789abcdef"}
    assert env["POLICYWATCH_OPENSEARCH_URL"]["value"] == "https://opensearch.logging.svc:9200"
    assert env["POLICYWATCH_OPENSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "opensearch-credentials"
    assert env["POLICYWATCH_OPENSEARCH_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    assert env["POLICYWATCH_LOG_STORE"]["value"] == "opensearch"
    assert env["POLICYWATCH_EVENT_STORE"]["value"] == "opensearch"
    assert env["POLICYWATCH_ALERTMANAGER_URL"]["value"] == "http://alertmanager-operated.monitoring.svc:9093"
    assert "WARNING" not in rendered_notes("full-values.yaml")


def test_default_evaluator_reads_logs_from_sql_and_notifies_no_alertmanager() -> None:
    env = env_map(container(one(rendered("default-values.yaml"), "Deployment")))
    for name in ("POLICYWATCH_OPENSEARCH_URL", "POLICYWATCH_LOG_STORE", "POLICYWATCH_EVENT_STORE"):
        assert name not in env
    assert "POLICYWATCH_ALERTMANAGER_URL" not in env
    assert "POLICYWATCH_INGEST_PROCESSES" not in env  # ingest in the server process


def test_ingest_processes_reach_the_evaluator_and_are_bounded() -> None:
    env = env_map(container(one(render({"evaluator": {"ingestProcesses": 2}}), "Deployment")))
    assert env["POLICYWATCH_INGEST_PROCESSES"]["value"] == "2"
    Settings(ingest_processes=int(env["POLICYWATCH_INGEST_PROCESSES"]["value"]))  # what the evaluator accepts
    with pytest.raises(HelmFailed, match="ingestProcesses"):
        render({"evaluator": {"ingestProcesses": -1}})


def test_opensearch_url_alone_keeps_events_in_sql() -> None:
    result = render({"evaluator": {"opensearch": {"url": "https://os:9200"}}})
    env = env_map(container(one(result, "Deployment")))
    assert env["POLICYWATCH_LOG_STORE"]["value"] == "opensearch"
    assert env["POLICYWATCH_EVENT_STORE"]["value"] == "sql"
    assert "POLICYWATCH_OPENSEARCH_USERNAME" not in env


def test_prometheus_rule_is_the_tested_rule_file() -> None:
    rule = one(rendered("full-values.yaml"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())


def test_dashboard_configmaps_carry_the_dashboard_files() -> None:
    maps = rendered("full-values.yaml").find("ConfigMap")
    assert len(maps) == len(dashboard_files())
    shipped = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Policywatch"}
        [(key, text)] = cm["data"].items()
        shipped[key] = json.loads(text)
    assert shipped == {p.name: json.loads(p.read_text()) for p in dashboard_files()}


@pytest.mark.parametrize(
    ("scenario", "kind"), [("full-values.yaml", "ServiceMonitor"), ("podmonitor-values.yaml", "PodMonitor")]
)
def test_monitors_scrape_both_collector_paths_with_the_rules_job_names(scenario: str, kind: str) -> None:
    result = rendered(scenario)
    monitors = result.find(kind)
    assert len(monitors) == 2
    endpoints_key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    jobs = {}
    for monitor in monitors:
        for endpoint in monitor["spec"][endpoints_key]:
            [job] = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
            jobs[job] = endpoint["path"]
    assert jobs == {
        "policywatch-collector": "/metrics",
        "policywatch-collector-health": "/collector/metrics",
        "policywatch-evaluator": "/metrics",
    }
    if kind == "ServiceMonitor":
        service = one(result, "Service", "-collector")
        assert service["spec"]["clusterIP"] == "None"
        endpoint = monitors[0]["spec"]["endpoints"][0]
        assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["serverName"] == "policywatch-collector"


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}, "either serviceMonitor or podMonitor"),
        ({"collector": {"tls": {"enabled": True}}}, "collector.tls.secretName is required"),
        (
            {"evaluator": {"opensearch": {"eventStore": "opensearch"}}},
            "eventStore=opensearch needs evaluator.opensearch.url",
        ),
    ],
)
def test_contradictory_values_stop_the_install_with_a_message(overlay: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        render(overlay)
    assert message in failed.value.stderr


def test_components_can_be_turned_off() -> None:
    result = render(
        {"evaluator": {"enabled": False}, "serviceMonitor": {"enabled": True}}, api_versions=PROMETHEUS_OPERATOR_APIS
    )
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in result.all())
    assert ("Deployment", "policywatch-evaluator") not in kinds
    assert ("ServiceMonitor", "policywatch-collector") in kinds
    assert all("evaluator" not in name for _, name in kinds)
    result = render({"collector": {"enabled": False}, "rbac": {"create": False}})
    assert {d["kind"] for d in result.all()} == {"Deployment", "Service", "Secret"}
    assert one(result, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "default"


def test_release_name_shapes_resource_names() -> None:
    result = render(release="netsec")
    assert one(result, "DaemonSet")["metadata"]["name"] == "netsec-policywatch-collector"
    result = render({"fullnameOverride": "pw"}, release="netsec")
    assert one(result, "Deployment")["metadata"]["name"] == "pw-evaluator"


@pytest.mark.parametrize(
    ("overlay", "where"),
    [
        ({"collector": {"port": "9081x"}}, "/collector/port"),
        ({"collector": {"port": 70000}}, "/collector/port"),
        ({"collector": {"markMask": "ff"}}, "/collector/markMask"),
        ({"collector": {"prot": 9081}}, "/collector"),
        ({"evaluator": {"auth": {"writeTokens": ["short"]}}}, "/evaluator/auth/writeTokens/0"),
        ({"evaluator": {"database": {"url": "mysql://x"}}}, "/evaluator/database/url"),
        ({"serviceMonitor": {"interval": "15 seconds"}}, "/serviceMonitor/interval"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"evaluator": {"alertmanagerUrl": "alertmanager:9093"}}, "/evaluator/alertmanagerUrl"),
        ({"evaluator": {"opensearch": {"eventStore": "elasticsearch"}}}, "/evaluator/opensearch/eventStore"),
    ],
)
def test_helm_refuses_values_the_schema_forbids_naming_the_field(overlay: dict[str, Any], where: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        render(overlay)
    assert "values don't meet the specifications of the schema" in failed.value.stderr
    assert f"at '{where}'" in failed.value.stderr
