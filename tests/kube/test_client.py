"""The controller's Kubernetes client against the real kube-apiserver: each way of authenticating it reads
from a kubeconfig or a Pod's ServiceAccount files, and clear refusals for configurations it cannot use."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.kube_controller.client import (
    ConfigError,
    KubeApiError,
    KubeClient,
    in_cluster_config,
    load_kubeconfig,
    resolve_config,
)
from api.server import main
from tests.fixtures.kube import KubeCluster
from tests.kube.conftest import alert_yaml, unique


def admin_config(cluster: KubeCluster) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    return config


def lists_alerts(client: KubeClient, name: str) -> bool:
    try:
        items, version = client.list("globalalerts")
    finally:
        client.close()
    return version.isdigit() and name in [i["metadata"]["name"] for i in items]


@pytest.fixture
def alert(crds: KubeCluster) -> Iterator[str]:
    name = unique("client")
    crds.kubectl("apply", "-f", "-", input_text=alert_yaml(name))
    yield name
    crds.kubectl("delete", "globalalert", name, "--ignore-not-found")


def test_token_kubeconfig_and_relative_ca_path(crds: KubeCluster, alert: str, tmp_path: Path) -> None:
    config = admin_config(crds)
    ca = Path(config["clusters"][0]["cluster"]["certificate-authority"])
    (tmp_path / "ca.crt").write_bytes(ca.read_bytes())
    config["clusters"][0]["cluster"]["certificate-authority"] = "ca.crt"  # relative to the kubeconfig's folder
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    assert lists_alerts(KubeClient(load_kubeconfig(tmp_path / "kubeconfig")), alert)


def test_client_certificate_data_and_ca_data(crds: KubeCluster, alert: str, tmp_path: Path) -> None:
    if crds.directory is None:
        pytest.skip("needs the test apiserver's CA key (POLICYWATCH_TEST_KUBECONFIG points elsewhere)")
    pki = crds.directory / "pki"
    key, csr, cert = tmp_path / "user.key", tmp_path / "user.csr", tmp_path / "user.crt"
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=cert-user"]
        + ["-keyout", str(key), "-out", str(csr)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key")]
        + ["-CAcreateserial", "-days", "1", "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    config = admin_config(crds)
    b64 = {p: base64.b64encode(p.read_bytes()).decode() for p in (key, cert, pki / "ca.crt")}
    cluster = config["clusters"][0]["cluster"]
    del cluster["certificate-authority"]
    cluster["certificate-authority-data"] = b64[pki / "ca.crt"]
    config["users"][0]["user"] = {"client-certificate-data": b64[cert], "client-key-data": b64[key]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    assert lists_alerts(KubeClient(load_kubeconfig(tmp_path / "kubeconfig")), alert)


def test_in_cluster_service_account_files(crds: KubeCluster, alert: str, tmp_path: Path) -> None:
    config = admin_config(crds)
    server = config["clusters"][0]["cluster"]["server"]  # https://127.0.0.1:PORT
    host, port = server.removeprefix("https://").rsplit(":", 1)
    (tmp_path / "token").write_text(config["users"][0]["user"]["token"] + "\n")
    (tmp_path / "ca.crt").write_bytes(Path(config["clusters"][0]["cluster"]["certificate-authority"]).read_bytes())
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    in_pod = in_cluster_config(tmp_path, env)
    assert in_pod.server == server and in_pod.token_file == tmp_path / "token"
    assert lists_alerts(KubeClient(in_pod), alert)

    (tmp_path / "token").write_text("not-a-valid-token")
    with pytest.raises(KubeApiError) as refused:
        KubeClient(in_cluster_config(tmp_path, env)).list("globalalerts")
    assert refused.value.code == 401


def test_resolution_order_and_refusals(crds: KubeCluster, tmp_path: Path) -> None:
    flag = load_kubeconfig(crds.kubeconfig)
    assert resolve_config(crds.kubeconfig, env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).server == flag.server
    assert resolve_config(None, env={"KUBECONFIG": str(crds.kubeconfig)}).server == flag.server
    with pytest.raises(ConfigError, match="token is missing|/token is missing"):
        resolve_config(None, env={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"})

    config = admin_config(crds)
    config["users"][0]["user"] = {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}}
    (tmp_path / "exec").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="exec/auth-provider plugin.*kubectl create token"):
        load_kubeconfig(tmp_path / "exec")
    config["current-context"] = "elsewhere"
    (tmp_path / "context").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="no entry 'elsewhere' in contexts"):
        load_kubeconfig(tmp_path / "context")
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        load_kubeconfig(tmp_path / "missing")


def test_evaluator_without_a_cluster_config_exits_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    database = f"sqlite:///{tmp_path / 'pw.db'}"
    assert main(["--definitions=kubernetes", "--database-url", database]) == 2
    assert "no cluster configuration" in capsys.readouterr().err
    assert main(["--definitions=kubernetes", "--kubeconfig", str(tmp_path / "nope"), "--database-url", database]) == 2
    assert "cannot read kubeconfig" in capsys.readouterr().err
    assert main(["--kubeconfig", str(tmp_path / "nope"), "--database-url", database]) == 2
    assert "--kubeconfig is read only with --definitions=kubernetes" in capsys.readouterr().err
