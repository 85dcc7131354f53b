"""The specification's sample YAMLs, sent as YAML: the ones that contradict the appendix fail with the
suggestion a user needs (spec README), the others pass; the ten built-in templates are all valid."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.ctl.resources import builtin_templates_text
from api.yamlio import load_yaml_documents
from tests.api.support import TEMPLATE_NAMES

YAML = {"content-type": "application/yaml"}

SAMPLE = """
apiVersion: projectcalico.org/v3
kind: GlobalAlert
metadata:
  name: sample
spec:
  description: "Sample"
  severity: 100
  dataSet: flows
  query: action=allow
  aggregateBy: [client_namespace, client_name_aggr]
  field: num_flows
  metric: sum
  condition: gt
  threshold: 0
"""

FREQUENT_DNS = """
apiVersion: projectcalico.org/v3
kind: GlobalAlert
metadata:
  name: frequent-dns-responses
spec:
  description: "Observed ${sum} NXDomain responses for ${qname}"
  severity: 100
  dataSet: dns
  query: rcode = NXDomain AND (rtype = A or rtype = AAAA)
  aggregateBy: qname
  field: count
  metric: sum
  condition: gte
  threshold: 100
"""

POSTGRES = """
apiVersion: projectcalico.org/v3
kind: GlobalAlert
metadata:
  name: postgres-from-internet
spec:
  description: "Internet connection to postgres ${dest_namespace}/${dest_name} from ${source_ip}"
  severity: 90
  dataSet: flows
  period: 1h
  lookback: 75m
  query: "dest_labels=\\"application=postgres\\" AND source_type=net AND action=allow AND proto=tcp AND dest_port=5432"
  aggregateBy: [dest_namespace, dest_name, source_ip]
"""

HTTP_TEMPLATE = """
apiVersion: projectcalico.org/v3
kind: GlobalAlertTemplate
metadata:
  name: http.connections
spec:
  description: "HTTP connections from ${source_namespace}/${source_name_aggr} to <desired_namespace>/${dest_name_aggr}"
  severity: 50
  dataSet: flows
  query: dest_namespace="<desired namespace>" AND dest_port=80
  aggregateBy: [source_namespace, dest_name_aggr, source_name_aggr]
  field: count
  metric: sum
  condition: gte
  threshold: 1
"""


def errors(client: TestClient, path: str, text: str) -> dict[str, str]:
    response = client.post(path, content=text, headers=YAML)
    assert response.status_code == 422, response.text
    return {e["path"]: e["reason"] for e in response.json()["errors"]}


def test_first_sample_suggests_flows_keys(sqlite_client: TestClient) -> None:
    found = errors(sqlite_client, "/globalalerts", SAMPLE)
    assert set(found) == {"spec.aggregateBy[0]", "spec.aggregateBy[1]"}
    assert "dns data set" in found["spec.aggregateBy[0]"] and "source_namespace" in found["spec.aggregateBy[0]"]
    assert "source_name_aggr" in found["spec.aggregateBy[1]"]
    fixed = SAMPLE.replace("client_namespace, client_name_aggr", "source_namespace, source_name_aggr")
    assert sqlite_client.post("/globalalerts", content=fixed, headers=YAML).status_code == 201


def test_frequent_dns_responses(sqlite_client: TestClient) -> None:
    found = errors(sqlite_client, "/globalalerts", FREQUENT_DNS)
    assert set(found) == {"spec.query", "spec.aggregateBy"}
    assert "rtype" in found["spec.query"] and "rrsets.type" in found["spec.query"]
    assert "list" in found["spec.aggregateBy"] and "[qname]" in found["spec.aggregateBy"]
    fixed = FREQUENT_DNS.replace("rtype", "rrsets.type").replace("aggregateBy: qname", "aggregateBy: [qname]")
    created = sqlite_client.post("/globalalerts", content=fixed, headers=YAML)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["field"] == "count"  # dns has a numeric count key


def test_postgres_example(sqlite_client: TestClient) -> None:
    found = errors(sqlite_client, "/globalalerts", POSTGRES)
    assert set(found) == {"spec.query"} and "dest_labels.labels" in found["spec.query"]
    fixed = POSTGRES.replace('dest_labels=\\"', 'dest_labels.labels=\\"')
    created = sqlite_client.post("/globalalerts", content=fixed, headers=YAML)
    assert created.status_code == 201, created.text
    assert "warning" not in created.headers  # 75m > 1h + 5m
    assert created.json()["spec"]["period"] == "1h0m0s"


def test_http_connections_template(sqlite_client: TestClient) -> None:
    found = errors(sqlite_client, "/globalalerttemplates", HTTP_TEMPLATE)
    assert set(found) == {"spec.field"} and "num_flows" in found["spec.field"]
    fixed = HTTP_TEMPLATE.replace("field: count", "field: num_flows")
    assert sqlite_client.post("/globalalerttemplates", content=fixed, headers=YAML).status_code == 201
    # As a GlobalAlert the placeholders are refused.
    as_alert = fixed.replace("kind: GlobalAlertTemplate", "kind: GlobalAlert")
    found = errors(sqlite_client, "/globalalerts", as_alert)
    assert set(found) == {"spec.query", "spec.description"}


def test_builtin_templates_are_the_ten_and_valid(sqlite_client: TestClient) -> None:
    documents = load_yaml_documents(builtin_templates_text())
    assert [d["metadata"]["name"] for d in documents] == TEMPLATE_NAMES
    for document in documents:
        response = sqlite_client.post("/globalalerttemplates", json=document)
        assert response.status_code == 201, response.text
    listed = sqlite_client.get("/globalalerttemplates").json()["items"]
    assert sorted(i["metadata"]["name"] for i in listed) == sorted(TEMPLATE_NAMES)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_each_template_works_as_an_alert(sqlite_client: TestClient, name: str) -> None:
    document = next(d for d in load_yaml_documents(builtin_templates_text()) if d["metadata"]["name"] == name)
    document = {**document, "kind": "GlobalAlert", "metadata": {"name": name}}
    response = sqlite_client.post("/globalalerts", json=document)
    assert response.status_code == 201, response.text
