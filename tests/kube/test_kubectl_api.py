"""The real kubectl 1.33 (``.venv/bin/kubectl``) against a running ``policywatch-evaluator``, no cluster
(issue 10, way 1): discovery, get/apply/delete with every alias of the spec, explain, edit, patch, label
selectors and watch, on both kinds; and over HTTPS with bearer tokens (kubectl sends a token only over TLS).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.support import EvaluatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBECTL = REPO_ROOT / ".venv" / "bin" / "kubectl"
ALERT_ALIASES = [
    "globalalert", "globalalerts", "GlobalAlert", "globalalert.projectcalico.org",
    "globalalerts.projectcalico.org", "globalalert.p", "globalalerts.p",
]  # fmt: skip
TEMPLATE_ALIASES = [
    a.replace("lobalalert", "lobalalerttemplate", 1).replace("Alert", "AlertTemplate") for a in ALERT_ALIASES
]
HEADER = ["NAME", "DATASET", "SEVERITY", "PERIOD", "HEALTHY", "LAST", "EXECUTED", "AGE"]

pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason=f"{KUBECTL} missing: run ./scripts/setup")


class Kubectl:
    """kubectl with its own kubeconfig, HOME and cache directory (no state from the machine)."""

    def __init__(self, directory: Path, server: str, *, token: str | None = None, ca: Path | None = None) -> None:
        self.directory = directory
        cluster: dict[str, Any] = {"server": server}
        if ca is not None:
            cluster["certificate-authority"] = str(ca)
        user = {"token": token} if token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "pw", "cluster": cluster}],
            "users": [{"name": "pw", "user": user}],
            "contexts": [{"name": "pw", "context": {"cluster": "pw", "user": "pw"}}],
            "current-context": "pw",
        }
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.env = {"HOME": str(directory), "PATH": "/usr/bin:/bin", "KUBECACHEDIR": str(directory / "cache")}

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def __call__(
        self, *args: str, input_text: str | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, **(env or {})},
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result


WRITE_TOKEN, READ_TOKEN = "w-" + "a" * 30, "r-" + "b" * 30


@dataclass
class Server:
    url: str
    ca: Path
    directory: Path

    def kubectl(self, who: str, token: str) -> Kubectl:
        directory = self.directory / who
        directory.mkdir(exist_ok=True)
        return Kubectl(directory, self.url, token=token, ca=self.ca)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One evaluator for the module, over HTTPS with a write and a read token: kubectl sends a bearer token
    only over TLS (and plain loopback HTTP without tokens is the same API)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing")
    directory = tmp_path_factory.mktemp("kubectl")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=policywatch", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=directory, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (directory / "tokens").write_text(f"write {WRITE_TOKEN}\nread {READ_TOKEN}\n")
    evaluator = EvaluatorProcess(directory)
    try:
        url = evaluator.start(
            "--no-scheduler", "--token-file", str(directory / "tokens"), "--tls-cert-file", str(directory / "cert.pem"),
            "--tls-key-file", str(directory / "key.pem"), scheme="https", ca=str(directory / "cert.pem"),
        )  # fmt: skip
        yield Server(url, directory / "cert.pem", directory)
    finally:
        evaluator.stop()


@pytest.fixture(scope="module")
def kubectl(server: Server) -> Kubectl:
    return server.kubectl("writer", WRITE_TOKEN)


def manifest(kind: str, name: str, **spec: Any) -> str:
    body: dict[str, Any] = {
        "summary": "Sample",
        "description": "denied flows from ${source_namespace}",
        "severity": 50,
        "dataSet": "flows",
        "query": "action=deny",
        "aggregateBy": ["source_namespace"],
        "metric": "count",
        "condition": "gt",
        "threshold": 0,
        **spec,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return yaml.safe_dump(
        {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name}, "spec": body}
    )


def test_discovery(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["major"] == "1" and version["serverVersion"]["gitVersion"].startswith("v1.33.")
    assert "projectcalico.org/v3" in kubectl("api-versions").stdout.split()
    listed = kubectl("api-resources", "--api-group=projectcalico.org", "-o", "wide").stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in listed[1:]}
    assert set(rows) == {"globalalerts", "globalalerttemplates"}
    assert "GlobalAlert" in rows["globalalerts"] and "false" in rows["globalalerts"]  # cluster-scoped
    assert "create,delete,get,list,patch,update,watch" in listed[1] or "[create delete get list patch" in listed[1]


@pytest.mark.parametrize(
    ("kind", "aliases"), [("GlobalAlert", ALERT_ALIASES), ("GlobalAlertTemplate", TEMPLATE_ALIASES)]
)
def test_apply_get_delete_with_every_alias(kubectl: Kubectl, kind: str, aliases: list[str]) -> None:
    name = f"alias-{kind.lower()}"
    created = kubectl("apply", "-f", "-", input_text=manifest(kind, name))
    assert created.stdout.strip() == f"{kind.lower()}.projectcalico.org/{name} created"
    for alias in aliases:
        found = kubectl("get", alias, name, "-o", "name").stdout.strip()
        assert found == f"{kind.lower()}.projectcalico.org/{name}", alias

    table = kubectl("get", aliases[0], name).stdout.splitlines()
    if kind == "GlobalAlert":
        assert table[0].split() == HEADER
        assert table[1].split()[:5] == [name, "flows", "50", "5m0s", "false"]
    else:
        assert table[0].split() == ["NAME", "DATASET", "SEVERITY", "PERIOD", "AGE"]
        assert table[1].split()[:4] == [name, "flows", "50", "5m0s"]
    assert name in kubectl("get", aliases[1]).stdout
    got = json.loads(kubectl("get", aliases[2], name, "-o", "json").stdout)
    assert got["kind"] == kind and got["spec"]["summary"] == "Sample"

    deleted = kubectl("delete", aliases[-1], name)
    assert deleted.stdout.strip() == f'{kind.lower()}.projectcalico.org "{name}" deleted'
    missing = kubectl("get", aliases[0], name, check=False)
    assert missing.returncode == 1 and "(NotFound)" in missing.stderr and name in missing.stderr


def test_apply_is_a_three_way_merge(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "threeway", severity=60))
    assert (
        "unchanged" in kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "threeway", severity=60)).stdout
    )
    # someone else sets a label; apply must keep it (it was never in the applied file)
    kubectl("label", "globalalert", "threeway", "owner=ops")
    # the file drops summary and changes severity: apply removes the one and changes the other
    changed = kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "threeway", severity=61, summary=None))
    assert changed.stdout.strip() == "globalalert.projectcalico.org/threeway configured"
    got = json.loads(kubectl("get", "globalalert", "threeway", "-o", "json").stdout)
    assert got["spec"]["severity"] == 61 and "summary" not in got["spec"]
    assert got["metadata"]["labels"] == {"owner": "ops"}
    applied = json.loads(got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert applied["spec"]["severity"] == 61 and "summary" not in applied["spec"]
    kubectl("delete", "-f", "-", input_text=manifest("GlobalAlert", "threeway"))
    assert kubectl("get", "globalalerts", "threeway", check=False).returncode == 1


def test_apply_invalid_objects_name_the_fields(kubectl: Kubectl) -> None:
    bad = kubectl(
        "apply", "-f", "-", input_text=manifest("GlobalAlert", "invalid", severity=0, dataSet="x"), check=False
    )
    assert bad.returncode == 1
    # kubectl prints details.causes[] as bullets under the object's name
    assert bad.stderr.startswith('The GlobalAlert "invalid" is invalid: \n* spec.severity: must be from 1 to 100')
    assert "* spec.dataSet: unknown data set 'x'" in bad.stderr
    unknown = manifest("GlobalAlert", "invalid").replace("severity: 50", "severity: 50\n  sevverity: 5")
    refused = kubectl("apply", "-f", "-", input_text=unknown, check=False)
    assert refused.returncode == 1 and "spec.sevverity" in refused.stderr
    assert kubectl("get", "globalalerts", "invalid", check=False).returncode == 1


def test_explain(kubectl: Kubectl) -> None:
    spec = kubectl("explain", "globalalerts.spec").stdout
    assert "KIND:       GlobalAlert" in spec and "GROUP:      projectcalico.org" in spec
    assert "dataSet\t<string> -required-" in spec and "substitutions\t<[]Object>" in spec
    assert "how often the alert runs" in spec
    field = kubectl("explain", "globalalert.spec.period").stdout
    assert "FIELD: period <string>" in field
    template = kubectl("explain", "globalalerttemplates.spec").stdout
    assert "KIND:       GlobalAlertTemplate" in template and "<placeholder>" in template
    top = kubectl("explain", "globalalerts", "--recursive").stdout
    assert "metadata\t<ObjectMeta>" in top and "errorConditions\t<[]Object>" in top
    # kubectl explain reads RESOURCE.FIELD...: a group only as the plural's full name (its own parsing, as
    # with CRDs), or as --api-version
    for kind, aliases in (("GlobalAlert", ALERT_ALIASES), ("GlobalAlertTemplate", TEMPLATE_ALIASES)):
        for alias in [a for a in aliases if "." not in a] + [f"{kind.lower()}s.projectcalico.org"]:
            assert f"KIND:       {kind}\n" in kubectl("explain", alias).stdout, alias
        qualified = kubectl("explain", f"{kind.lower()}.spec.severity", "--api-version=projectcalico.org/v3").stdout
        assert "FIELD: severity <integer>" in qualified


@pytest.mark.parametrize(
    ("kind", "alias"),
    [("GlobalAlert", "globalalerts.p"), ("GlobalAlertTemplate", "globalalerttemplate.projectcalico.org")],
)
def test_edit(kubectl: Kubectl, tmp_path: Path, kind: str, alias: str) -> None:
    name = f"edit-{kind.lower()}"
    kubectl("apply", "-f", "-", input_text=manifest(kind, name, severity=33))
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/severity: 33/severity: 44/' \"$1\"\n")
    editor.chmod(0o755)
    edited = kubectl("edit", alias, name, env={"EDITOR": str(editor)})
    assert edited.stdout.strip() == f"{kind.lower()}.projectcalico.org/{name} edited"
    assert json.loads(kubectl("get", kind.lower(), name, "-o", "json").stdout)["spec"]["severity"] == 44

    # an edit the server refuses is reported with the field, and nothing changes
    editor.write_text("#!/bin/sh\nsed -i 's/severity: 44$/severity: 444/' \"$1\"\n")
    refused = kubectl("edit", alias, name, env={"EDITOR": str(editor)}, check=False)
    assert refused.returncode == 1 and f'"{name}" is invalid' in refused.stderr
    assert "Edit cancelled, no valid changes were saved" in refused.stderr
    assert json.loads(kubectl("get", kind.lower(), name, "-o", "json").stdout)["spec"]["severity"] == 44
    kubectl("delete", kind.lower(), name)


def test_server_dry_run_and_diff(kubectl: Kubectl) -> None:
    dry = kubectl("apply", "--dry-run=server", "-f", "-", input_text=manifest("GlobalAlert", "dry", severity=20))
    assert dry.stdout.strip() == "globalalert.projectcalico.org/dry created (server dry run)"
    assert kubectl("get", "globalalert", "dry", check=False).returncode == 1
    kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "dry", severity=20))
    same = kubectl("diff", "-f", "-", input_text=manifest("GlobalAlert", "dry", severity=20), check=False)
    assert same.returncode == 0 and same.stdout == ""
    changed = kubectl("diff", "-f", "-", input_text=manifest("GlobalAlert", "dry", severity=21), check=False)
    assert changed.returncode == 1 and "-  severity: 20\n+  severity: 21" in changed.stdout
    kubectl("delete", "globalalert", "dry", "--dry-run=server")
    assert json.loads(kubectl("get", "globalalert", "dry", "-o", "json").stdout)["spec"]["severity"] == 20
    kubectl("delete", "globalalert", "dry")


def test_patch_types(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "patched"))
    kubectl("patch", "globalalert", "patched", "--type=merge", "-p", '{"spec":{"severity":7}}')
    kubectl(
        "patch", "globalalert", "patched", "--type=json", "-p", '[{"op":"replace","path":"/spec/severity","value":8}]'
    )
    assert json.loads(kubectl("get", "globalalert", "patched", "-o", "json").stdout)["spec"]["severity"] == 8
    failed = kubectl(
        "patch", "globalalert", "patched", "--type=json", "-p", '[{"op":"test","path":"/spec/severity","value":9}]',
        check=False,
    )  # fmt: skip
    assert failed.returncode == 1 and "test failed" in failed.stderr
    strategic = kubectl("patch", "globalalert", "patched", "-p", '{"spec":{"severity":9}}', check=False)
    assert strategic.returncode == 1 and "--type=merge" in strategic.stderr
    kubectl("delete", "globalalert", "patched")


def test_label_selectors(kubectl: Kubectl) -> None:
    for name, team in (("sel-a", "net"), ("sel-b", "sec"), ("sel-c", "net")):
        kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", name))
        kubectl("label", "globalalert", name, f"team={team}")
    names = kubectl("get", "globalalerts", "-l", "team=net", "-o", "name").stdout.split()
    assert names == ["globalalert.projectcalico.org/sel-a", "globalalert.projectcalico.org/sel-c"]
    names = kubectl("get", "globalalerts", "-l", "team,team notin (net)", "-o", "name").stdout.split()
    assert names == ["globalalert.projectcalico.org/sel-b"]
    kubectl("delete", "globalalerts", "-l", "team in (net,sec)")
    assert kubectl("get", "globalalerts", "-l", "team").stderr.strip() == "No resources found"


def test_watch(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "watched", severity=10))
    watcher = kubectl.popen("get", "globalalerts", "watched", "--watch", "--output-watch-events", "-o", "json")
    try:
        time.sleep(1.0)  # the initial list and the watch request are out
        kubectl("patch", "globalalert", "watched", "--type=merge", "-p", '{"spec":{"severity":11}}')
        kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "other"))  # not selected by name
        kubectl("delete", "globalalert", "watched")
        time.sleep(0.8)  # the server polls its change log every 0.25 s
    finally:
        watcher.terminate()
        out, err = watcher.communicate(timeout=10)
    events = [json.loads(chunk) for chunk in _json_documents(out)]
    assert [(e["type"], e["object"]["spec"]["severity"]) for e in events] == [
        ("ADDED", 10),
        ("MODIFIED", 11),
        ("DELETED", 11),
    ], err
    assert all(e["object"]["metadata"]["name"] == "watched" for e in events)
    kubectl("delete", "globalalert", "other")


def _json_documents(text: str) -> list[str]:
    decoder = json.JSONDecoder()
    documents, index = [], 0
    while index < len(text.rstrip()):
        while text[index].isspace():
            index += 1
        _, end = decoder.raw_decode(text, index)
        documents.append(text[index:end])
        index = end
    return documents


def test_tokens(server: Server, kubectl: Kubectl) -> None:
    reader = server.kubectl("reader", READ_TOKEN)
    stranger = server.kubectl("stranger", "x" * 32)
    assert kubectl("apply", "-f", "-", input_text=manifest("GlobalAlert", "tls")).stdout.strip().endswith("created")
    assert "tls" in reader("get", "globalalerts").stdout
    refused = reader("delete", "globalalert", "tls", check=False)
    assert refused.returncode == 1 and "Forbidden" in refused.stderr
    unknown = stranger("get", "globalalerts", check=False)
    assert unknown.returncode == 1 and "You must be logged in to the server" in unknown.stderr
    kubectl("delete", "globalalert", "tls")
