"""What each value does to the manifests the real `helm template` renders (and to NOTES.txt), and the values helm
must refuse with a message: Capabilities gating, probes, resources, tokens, TLS, OpenSearch credentials, extra
volumes, PDB, NetworkPolicy, PVC, topology spread, priority class, and the one collector port."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from demo.assets import CHART_DIR
from tests.fixtures.helm import PROMETHEUS_OPERATOR_APIS, HelmFailed, Rendered, lint, notes
from tests.fixtures.helm import render as helm_render
from tests.fixtures.kubeschema import schema_errors

MONITORING = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
EVALUATOR_SELECTOR = {
    "app.kubernetes.io/name": "policywatch",
    "app.kubernetes.io/instance": "policywatch",
    "app.kubernetes.io/component": "evaluator",
}


def render(values: dict[str, Any] | None = None, **kwargs: Any) -> Rendered:
    """helm template, and every manifest it renders through kubernetes-validate --strict (or the CRD schema)."""
    return valid(helm_render(values, **kwargs))


@cache
def scenario(name: str) -> Rendered:
    return render(values_files=[CHART_DIR / "ci" / f"{name}-values.yaml"], api_versions=PROMETHEUS_OPERATOR_APIS)


@cache
def scenario_notes(name: str) -> str:
    return notes(values_files=[CHART_DIR / "ci" / f"{name}-values.yaml"]).notes


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [c] = workload["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload).get("env", [])}


def pod(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def refused(values: dict[str, Any]) -> str:
    with pytest.raises(HelmFailed) as failed:
        helm_render(values, api_versions=PROMETHEUS_OPERATOR_APIS)
    return failed.value.stderr


def valid(result: Rendered) -> Rendered:
    for doc in result.all():
        assert schema_errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"
    return result


# Prometheus Operator objects only where the cluster serves their API.


def test_monitors_and_rules_are_skipped_where_the_cluster_has_no_prometheus_operator() -> None:
    result = render(MONITORING)
    assert {"ServiceMonitor", "PrometheusRule"} & result.kinds() == set()
    assert [s["metadata"]["name"] for s in result.find("Service")] == ["policywatch-evaluator"]
    text = notes(MONITORING).notes
    assert "SKIPPED: PrometheusRule, ServiceMonitor: the cluster does not serve monitoring.coreos.com/v1" in text
    assert "prometheusOperator.force=true" in text
    assert "ServiceMonitors created" not in text


def test_monitors_and_rules_are_created_where_the_api_is_served_or_forced() -> None:
    served = render(MONITORING, api_versions=PROMETHEUS_OPERATOR_APIS)
    forced = render({**MONITORING, "prometheusOperator": {"force": True}})
    for result in (served, forced):
        assert len(result.find("ServiceMonitor")) == 2 and len(result.find("PrometheusRule")) == 1
        assert result.one("Service", "-collector")["spec"]["clusterIP"] == "None"
    text = notes({**MONITORING, "prometheusOperator": {"force": True}}).notes
    assert "ServiceMonitors created" in text and "PrometheusRule policywatch created" in text
    assert "SKIPPED" not in text
    # One kind served, the other not: only that one.
    partial = render(MONITORING, api_versions=["monitoring.coreos.com/v1/PrometheusRule"])
    assert partial.find("ServiceMonitor") == [] and len(partial.find("PrometheusRule")) == 1


def test_podmonitors_are_gated_the_same_way() -> None:
    values = {"podMonitor": {"enabled": True}}
    assert render(values).find("PodMonitor") == []
    assert len(render(values, api_versions=["monitoring.coreos.com/v1/PodMonitor"]).find("PodMonitor")) == 2


# Probes


def test_probes_are_http_gets_of_health_endpoints() -> None:
    result = render()
    collector = container(result.one("DaemonSet"))
    evaluator = container(result.one("Deployment"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert collector[probe]["httpGet"] == {"path": "/collector/metrics", "port": "metrics", "scheme": "HTTP"}
        assert evaluator[probe]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    assert collector["startupProbe"]["failureThreshold"] * collector["startupProbe"]["periodSeconds"] == 300


def test_probes_follow_tls_and_fall_back_to_tcp_under_client_auth() -> None:
    tls = {"collector": {"tls": {"enabled": True, "secretName": "c-tls"}}}
    tls["evaluator"] = {"tls": {"enabled": True, "secretName": "e-tls"}}
    result = render(tls)
    assert container(result.one("DaemonSet"))["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container(result.one("Deployment"))["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    client_auth = {"collector": {"tls": {"enabled": True, "secretName": "c-tls", "clientAuth": True}}}
    collector = container(render(client_auth).one("DaemonSet"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert collector[probe]["tcpSocket"] == {"port": "metrics"} and "httpGet" not in collector[probe]


# Resources


def test_default_resources_are_sized_from_the_measurements() -> None:
    result = render()
    collector = container(result.one("DaemonSet"))["resources"]
    evaluator = container(result.one("Deployment"))["resources"]
    # The collector holds ~205 MB after BCC's compile: its request covers that, its limit the flood growth.
    assert collector == {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    assert evaluator == {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    overridden = render({"collector": {"resources": {"requests": {"memory": "300Mi"}}}}).one("DaemonSet")
    assert container(overridden)["resources"]["requests"] == {"cpu": "50m", "memory": "300Mi"}


# Tokens


def test_existing_token_secret_makes_rendering_repeatable() -> None:
    first = render(values_files=[CHART_DIR / "ci" / "sqlite-persistent-values.yaml"])
    second = render(values_files=[CHART_DIR / "ci" / "sqlite-persistent-values.yaml"])
    assert first == second
    assert first.find("Secret") == []
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env(first.one("Deployment")).values() if "valueFrom" in e}
    assert refs == {"policywatch-tokens"}
    assert "get secret policywatch-tokens" in scenario_notes("sqlite-persistent")


def test_generated_token_notes_say_how_it_stays_stable() -> None:
    text = scenario_notes("default")
    assert "the chart generated this token; upgrades keep it" in text
    assert "evaluator.auth.existingSecret" in text
    assert "the chart generated" not in scenario_notes("full")


# Contradictions


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"evaluator": {"replicas": 2}},
            "evaluator.replicas=2 needs a shared database: on SQLite (no evaluator.database.url or existingSecret) "
            "only one evaluator may run",
        ),
        (
            {"evaluator": {"replicas": 3, "persistence": {"enabled": True}}},
            "evaluator.replicas=3 needs a shared database",
        ),
        (
            {"evaluator": {"database": {"url": "postgresql://db/pw"}, "persistence": {"enabled": True}}},
            "evaluator.persistence keeps the SQLite file",
        ),
        (
            {"collector": {"tls": {"enabled": True, "secretName": "t", "clientAuth": True}}, **MONITORING},
            "collector.tls.clientAuth=true: Prometheus must present a client certificate to scrape the collector; set "
            "serviceMonitor.tlsConfig.cert and serviceMonitor.tlsConfig.keySecret",
        ),
        (
            {
                "collector": {"tls": {"enabled": True, "secretName": "t", "clientAuth": True}},
                "podMonitor": {"enabled": True, "tlsConfig": {"cert": {"secret": {"name": "p", "key": "tls.crt"}}}},
            },
            "set podMonitor.tlsConfig.cert and podMonitor.tlsConfig.keySecret",
        ),
        ({"collector": {"tls": {"clientAuth": True}}}, "collector.tls.clientAuth=true needs collector.tls.enabled"),
        ({"evaluator": {"tls": {"enabled": True}}}, "evaluator.tls.secretName is required"),
    ],
)
def test_contradictory_values_fail_with_the_message(values: dict[str, Any], message: str) -> None:
    assert message in refused(values)


def test_replicas_on_a_real_database_are_kept() -> None:
    deployment = render({"evaluator": {"replicas": 2, "database": {"url": "postgresql://db/pw"}}}).one("Deployment")
    assert deployment["spec"]["replicas"] == 2 and "strategy" not in deployment["spec"]


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"evaluator": {"persistence": {"size": "lots"}}}, "/evaluator/persistence/size"),
        ({"evaluator": {"podDisruptionBudget": {"minAvailable": "half"}}}, "/evaluator/podDisruptionBudget"),
        ({"evaluator": {"topologySpreadConstraints": [{"maxSkew": 1}]}}, "/evaluator/topologySpreadConstraints/0"),
        ({"evaluator": {"extraVolumeMounts": [{"name": "x", "mountPath": "rel"}]}}, "/evaluator/extraVolumeMounts/0"),
        ({"prometheusOperator": {"force": "yes"}}, "/prometheusOperator/force"),
        ({"evaluator": {"opensearch": {"passwordKey": ""}}}, "/evaluator/opensearch/passwordKey"),
    ],
)
def test_schema_refuses_bad_new_values(values: dict[str, Any], where: str) -> None:
    stderr = refused(values)
    assert "values don't meet the specifications of the schema" in stderr and f"at '{where}" in stderr
    # helm lint refuses them too (it only logs a template's `fail`, so contradictions are caught by template).
    with pytest.raises(HelmFailed) as linted:
        lint(values=values)
    assert f"[ERROR] values.yaml: - at '{where}" in linted.value.stdout


# TLS to the monitors


def test_client_auth_scrapes_present_the_configured_certificate() -> None:
    for monitor in scenario("full").find("ServiceMonitor", "-collector"):
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["scheme"] == "https"
            assert endpoint["tlsConfig"]["cert"] == {"secret": {"name": "prometheus-client-tls", "key": "tls.crt"}}
            assert endpoint["tlsConfig"]["keySecret"] == {"name": "prometheus-client-tls", "key": "tls.key"}
    assert "client certificate signed by the CA in Secret policywatch-collector-tls" in scenario_notes("full")


def test_evaluator_tls_serves_https_and_monitors_scrape_it() -> None:
    result = scenario("calico-enterprise")
    deployment = result.one("Deployment")
    variables = env(deployment)
    assert variables["POLICYWATCH_TLS_CERT_FILE"]["value"] == "/etc/policywatch/tls/tls.crt"
    assert variables["POLICYWATCH_TLS_KEY_FILE"]["value"] == "/etc/policywatch/tls/tls.key"
    volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "policywatch-evaluator-tls"
    [endpoint] = result.one("ServiceMonitor", "-evaluator")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["serverName"] == "policywatch-evaluator"
    text = scenario_notes("calico-enterprise")
    assert "export POLICYWATCH_SERVER=https://127.0.0.1:8080" in text
    assert "curl --cacert $POLICYWATCH_CA_FILE" in text and "--ca-file $POLICYWATCH_CA_FILE" in text


# OpenSearch credentials and CA


def test_opensearch_credentials_and_ca_fit_calico_enterprise() -> None:
    deployment = scenario("calico-enterprise").one("Deployment")
    variables = env(deployment)
    user = variables["POLICYWATCH_OPENSEARCH_USERNAME"]["valueFrom"]["secretKeyRef"]
    password = variables["POLICYWATCH_OPENSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert user == {"name": "policywatch-elasticsearch-access", "key": "username"}
    assert password == {"name": "policywatch-elasticsearch-access", "key": "password"}
    assert variables["POLICYWATCH_OPENSEARCH_CA_FILE"]["value"] == "/etc/policywatch/opensearch-ca/ca.crt"
    assert "POLICYWATCH_OPENSEARCH_VERIFY_CERTS" not in variables
    volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
    assert volumes["opensearch-ca"]["secret"] == {
        "secretName": "tigera-secure-es-http-certs-public",
        "items": [{"key": "tls.crt", "path": "ca.crt"}],
    }
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["opensearch-ca"]["mountPath"] == "/etc/policywatch/opensearch-ca"


def test_opensearch_secret_with_only_a_password_and_no_verification() -> None:
    values = {
        "evaluator": {
            "opensearch": {
                "url": "https://es:9200",
                "existingSecret": "calico-es-elastic-user",
                "username": "elastic",
                "passwordKey": "elastic",
                "verifyCerts": False,
            }
        }
    }
    variables = env(render(values).one("Deployment"))
    assert variables["POLICYWATCH_OPENSEARCH_USERNAME"] == {
        "name": "POLICYWATCH_OPENSEARCH_USERNAME",
        "value": "elastic",
    }
    ref = variables["POLICYWATCH_OPENSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "calico-es-elastic-user", "key": "elastic"}
    assert variables["POLICYWATCH_OPENSEARCH_VERIFY_CERTS"]["value"] == "false"
    assert "POLICYWATCH_OPENSEARCH_CA_FILE" not in variables


# Extra volumes, mounts, env


def test_extra_volumes_mounts_and_env_reach_the_pods() -> None:
    result = scenario("calico-enterprise")
    deployment = result.one("Deployment")
    volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
    assert volumes["corp-ca"] == {"name": "corp-ca", "configMap": {"name": "corp-ca-bundle"}}
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["corp-ca"] == {"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True}
    assert env(deployment)["SSL_CERT_DIR"]["value"] == "/etc/ssl/corp"
    assert env(result.one("DaemonSet"))["TZ"]["value"] == "UTC"
    values = {
        "collector": {
            "extraVolumes": [{"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf"}}],
            "extraVolumeMounts": [{"name": "bpffs", "mountPath": "/sys/fs/bpf"}],
        }
    }
    ds = render(values).one("DaemonSet")
    assert {"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf"}} in pod(ds)["volumes"]
    assert {"name": "bpffs", "mountPath": "/sys/fs/bpf"} in container(ds)["volumeMounts"]


# Availability: PDB, topology spread, priority class


def test_pod_disruption_budget() -> None:
    pdb = scenario("calico-enterprise").one("PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 2, "selector": {"matchLabels": EVALUATOR_SELECTOR}}
    default = render({"evaluator": {"podDisruptionBudget": {"enabled": True}}}).one("PodDisruptionBudget")
    assert default["spec"]["maxUnavailable"] == 1 and "minAvailable" not in default["spec"]
    pct = render({"evaluator": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"}}})
    assert pct.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"
    assert render().find("PodDisruptionBudget") == []


def test_topology_spread_gets_the_evaluator_selector_and_priority_class() -> None:
    spec = pod(scenario("calico-enterprise").one("Deployment"))
    assert spec["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": EVALUATOR_SELECTOR},
        }
    ]
    assert spec["priorityClassName"] == "policywatch-evaluator"
    own = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    own["labelSelector"] = {"matchLabels": {"team": "x"}}
    spread = pod(render({"evaluator": {"topologySpreadConstraints": [own]}}).one("Deployment"))
    assert spread["topologySpreadConstraints"] == [own]
    assert "priorityClassName" not in pod(render().one("Deployment"))


# NetworkPolicy


def test_network_policy_opens_only_the_api_port() -> None:
    policy = scenario("calico-enterprise").one("NetworkPolicy")["spec"]
    assert policy["podSelector"] == {"matchLabels": EVALUATOR_SELECTOR}
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert len(policy["egress"]) == 3
    open_egress = render({"evaluator": {"networkPolicy": {"enabled": True}}}).one("NetworkPolicy")["spec"]
    assert open_egress["policyTypes"] == ["Ingress"] and "egress" not in open_egress
    assert "from" not in open_egress["ingress"][0]


# SQLite on a PVC


def test_sqlite_on_a_persistent_volume_claim() -> None:
    result = scenario("sqlite-persistent")
    claim = result.one("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "policywatch-evaluator-data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "standard",
        "resources": {"requests": {"storage": "2Gi"}},
    }
    deployment = result.one("Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "policywatch-evaluator-data"}
    assert env(deployment)["POLICYWATCH_DATABASE_URL"]["value"] == "sqlite:////var/lib/policywatch/policywatch.db"
    text = scenario_notes("sqlite-persistent")
    assert "SQLite on PersistentVolumeClaim policywatch-evaluator-data" in text and "WARNING" not in text
    existing = render({"evaluator": {"persistence": {"enabled": True, "existingClaim": "mine"}}})
    assert existing.find("PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in pod(existing.one("Deployment"))["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "mine"}


# One collector port


def test_one_collector_port_everywhere() -> None:
    result = scenario("calico-enterprise")
    ds = result.one("DaemonSet")
    c = container(ds)
    assert "--port=9181" in c["args"]
    assert env(ds)["FELIX_PROMETHEUSREPORTERPORT"]["value"] == "9181"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9181, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "metrics"
    service = result.one("Service", "-collector")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9181, "targetPort": "metrics", "protocol": "TCP"}]
    for endpoint in result.one("ServiceMonitor", "-collector")["spec"]["endpoints"]:
        assert endpoint["port"] == "metrics"
    rendered_text = "\n".join(str(d) for d in result.all())
    assert "9081" not in rendered_text
    text = scenario_notes("calico-enterprise")
    assert "http://<node-IP>:9181/metrics" in text and "9081" not in text


def test_the_felix_port_collision_is_told_in_values_and_notes() -> None:
    values_text = (CHART_DIR / "values.yaml").read_text()
    assert "9081 is also where Calico Enterprise's" in values_text and "PrometheusReporterPort" in values_text
    text = scenario_notes("default")
    assert "Port 9081 is also Calico Enterprise Felix's Prometheus reporter port" in text
    assert "set collector.port, e.g. 9181" in text


# NOTES per values


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("ClusterIP", "kubectl -n policywatch port-forward svc/policywatch-evaluator 8080:8080"),
        ("NodePort", "get svc policywatch-evaluator -o jsonpath='{.spec.ports[0].nodePort}'"),
        (
            "LoadBalancer",
            "-o jsonpath='{.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}'",
        ),
    ],
)
def test_notes_tell_how_to_reach_the_api_alerts_page_and_metrics(service: str, expected: str) -> None:
    text = notes({"evaluator": {"service": {"type": service}}}).notes
    assert expected in text
    assert "export POLICYWATCH_SERVER=http" in text
    assert "get secret policywatch-evaluator-tokens -o jsonpath='{.data.write-tokens}'" in text
    assert 'curl -H "Authorization: Bearer $POLICYWATCH_TOKEN" $POLICYWATCH_SERVER/globalalerts' in text
    assert "Alerts page:  $POLICYWATCH_SERVER/ui" in text
    assert "Metrics:      $POLICYWATCH_SERVER/metrics" in text
    assert "http://<node-IP>:9081/collector/metrics" in text


def test_notes_follow_the_evaluator_and_monitoring_values() -> None:
    full = scenario_notes("full")
    assert (
        "Logs are read from OpenSearch at https://opensearch.logging.svc:9200; events are stored in OpenSearch" in full
    )
    assert "posted to Alertmanager at http://alertmanager-operated.monitoring.svc:9093" in full
    assert "https://<node-IP>:9081/metrics" in full
    assert "Grafana dashboards in ConfigMaps labelled grafana_dashboard=1 in namespace monitoring" in full
    default = scenario_notes("default")
    assert "Logs: the embedded store" in default and "No Alertmanager" in default
    assert "No ServiceMonitor/PodMonitor" in default
    podmonitor = scenario_notes("podmonitor")
    assert "PodMonitors created" in podmonitor
    assert "capabilities BPF, PERFMON, NET_ADMIN:" in podmonitor
    assert "GlobalAlert evaluator" not in notes({"evaluator": {"enabled": False}}).notes
