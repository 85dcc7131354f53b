"""Fixtures of the cluster tests: the CRDs applied to the session's kube-apiserver, an evaluator process
running with ``--definitions=kubernetes`` against it, and helpers to wait on what kubectl shows."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.api.support import EvaluatorProcess
from tests.fixtures.kube import KubeCluster

CRD_DIR = Path(__file__).resolve().parents[2] / "helm" / "policywatch" / "crds"
PLURALS = ["globalalerts", "globalalerttemplates"]
T = TypeVar("T")


def apply_crds(cluster: KubeCluster) -> None:
    for plural in PLURALS:
        cluster.kubectl("apply", "-f", str(CRD_DIR / f"{plural}.yaml"))
    for plural in PLURALS:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.projectcalico.org", "--timeout=30s")


@pytest.fixture(scope="session")
def crds(kube_cluster: KubeCluster) -> KubeCluster:
    """The session's cluster with both CRDs established."""
    apply_crds(kube_cluster)
    return kube_cluster


def unique(prefix: str) -> str:
    """A name no other test (the cluster is shared by the session) uses."""
    return f"{prefix}-{secrets.token_hex(3)}"


def alert_yaml(name: str, kind: str = "GlobalAlert", **spec: Any) -> str:
    body = {"description": "a policy was deleted", "severity": 70, "dataSet": "audit", "query": "verb=delete"}
    body.update({"period": "1m", "lookback": "5m"} if kind == "GlobalAlert" else {})
    body.update(spec)
    doc = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name}, "spec": body}
    return yaml.safe_dump(doc)


def status_of(cluster: KubeCluster, name: str) -> dict[str, Any]:
    """``.status`` as kubectl shows it (``{}`` before the first write)."""
    out = cluster.kubectl("get", "globalalert", name, "-o", "jsonpath={.status}").stdout
    return dict(json.loads(out)) if out.strip() else {}


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def start_evaluator(tmp_path: Path, kubeconfig: Path, *args: str) -> EvaluatorProcess:
    process = EvaluatorProcess(tmp_path)
    process.start("--definitions=kubernetes", "--kubeconfig", str(kubeconfig), *args)
    return process


@pytest.fixture(scope="module")
def kube_evaluator(crds: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvaluatorProcess]:
    """``policywatch-evaluator --definitions=kubernetes`` (SQLite beside it) for the tests of one module."""
    process = EvaluatorProcess(tmp_path_factory.mktemp("kube-evaluator"))
    try:
        process.start("--definitions=kubernetes", "--kubeconfig", str(crds.kubeconfig))
        yield process
    finally:
        process.stop()
