"""The chart's RBAC, rendered by the real ``helm template`` and applied to the real kube-apiserver: a
ServiceAccount token bound by the evaluator's ClusterRole is enough for the controller (list, watch, status),
and not enough to write a spec; the aggregated edit role lets users apply GlobalAlerts but not their status."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from api.kube_controller.client import KubeClient, load_kubeconfig
from api.kube_controller.controller import KubeDefinitions
from tests.fixtures.kube import REPO_ROOT, KubeCluster
from tests.kube.conftest import alert_yaml, start_evaluator, status_of, unique, wait_for

CHART = REPO_ROOT / "helm" / "policywatch"


def render_rbac(release: str, namespace: str) -> str:
    helm = shutil.which("helm", path=str(REPO_ROOT / ".venv" / "bin")) or "helm"
    return subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", namespace, "--set", "kubernetes.enabled=true"]
        + ["--show-only", "templates/evaluator-rbac.yaml"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def token_kubeconfig(cluster: KubeCluster, namespace: str, account: str, path: Path) -> KubeCluster:
    """A kubeconfig of the cluster that authenticates as the ServiceAccount (a real TokenRequest token)."""
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    return KubeCluster(path)


def forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "forbidden" in result.stderr.lower()


def test_chart_rbac_is_enough_for_the_controller_and_no_more(crds: KubeCluster, tmp_path: Path) -> None:
    namespace, release = unique("pw-rbac"), unique("pw")
    rendered = render_rbac(release, namespace)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    binding = by_kind[("ClusterRoleBinding", f"{release}-policywatch-evaluator")]
    account = binding["subjects"][0]["name"]
    assert binding["subjects"][0]["namespace"] == namespace
    assert "APIService" not in {d["kind"] for d in docs}

    valid, invalid = unique("rbac-ok"), unique("rbac-bad")
    crds.kubectl("create", "namespace", namespace)
    crds.kubectl("apply", "-f", "-", input_text=rendered)
    editor_binding = f"{release}-test-editor"
    try:
        controller = token_kubeconfig(crds, namespace, account, tmp_path / "evaluator.kubeconfig")
        crds.kubectl(
            "apply", "-f", "-", input_text=alert_yaml(valid) + "---\n" + alert_yaml(invalid, query="colour=blue")
        )
        evaluator = start_evaluator(tmp_path, controller.kubeconfig)
        try:
            wait_for(lambda: status_of(crds, valid).get("executionState") == "executed", f"{valid} run")
            bad = wait_for(lambda: (s := status_of(crds, invalid)).get("executionState") and s, f"{invalid} status")
            assert bad["healthy"] is False and bad["errorConditions"][0]["message"].startswith("spec.query:")
        finally:
            evaluator.stop()

        # The controller's token may read and write status, never a spec.
        patch = '{"spec": {"severity": 1}}'
        assert forbidden(controller.kubectl("patch", "globalalert", valid, "--type=merge", "-p", patch, check=False))
        assert forbidden(controller.kubectl("delete", "globalalert", valid, check=False))
        assert forbidden(controller.kubectl("apply", "-f", "-", input_text=alert_yaml(unique("x")), check=False))
        can = controller.kubectl("auth", "can-i", "update", "globalalerts.projectcalico.org", "--subresource=status")
        assert can.stdout.strip() == "yes"
        assert crds.kubectl("get", "globalalert", valid, "-o", "jsonpath={.spec.severity}").stdout == "70"

        # A user with the aggregated edit role (bound directly: no controller-manager aggregates here).
        edit_role = f"{release}-policywatch-globalalerts-edit"
        view_role = f"{release}-policywatch-globalalerts-view"
        labels = by_kind[("ClusterRole", edit_role)]["metadata"]["labels"]
        assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
        assert by_kind[("ClusterRole", view_role)]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"]
        editor = token_kubeconfig(crds, namespace, "editor", tmp_path / "editor.kubeconfig")
        for role in (edit_role, view_role):
            crds.kubectl(
                "create", "clusterrolebinding", f"{editor_binding}-{role[-4:]}", f"--clusterrole={role}",
                f"--serviceaccount={namespace}:editor",
            )  # fmt: skip
        editor.kubectl("patch", "globalalert", valid, "--type=merge", "-p", patch)
        assert editor.kubectl("get", "globalalert", valid, "-o", "jsonpath={.spec.severity}").stdout == "1"
        status_patch = '{"status": {"healthy": false}}'
        assert forbidden(
            editor.kubectl(
                "patch", "globalalert", valid, "--subresource=status", "--type=merge", "-p", status_patch, check=False
            )
        )
    finally:
        crds.kubectl("delete", "globalalert", valid, invalid, "--ignore-not-found")
        crds.kubectl(
            "delete", "clusterrolebinding", f"{editor_binding}-edit", f"{editor_binding}-view", "--ignore-not-found"
        )
        crds.kubectl("delete", "-f", "-", "--ignore-not-found", input_text=rendered)


def test_without_the_binding_the_controller_says_what_to_grant(crds: KubeCluster, tmp_path: Path) -> None:
    namespace = unique("pw-norbac")
    crds.kubectl("create", "namespace", namespace)
    unbound = token_kubeconfig(crds, namespace, "evaluator", tmp_path / "unbound.kubeconfig")
    definitions = KubeDefinitions(KubeClient(load_kubeconfig(unbound.kubeconfig)), initial_sync_timeout=0.5)

    async def start_and_stop() -> None:
        await definitions.start()
        await definitions.stop()

    asyncio.run(start_and_stop())
    wait_for(lambda: definitions.alerts.last_error, "the first list's error")
    assert not definitions.alerts.synced.is_set()
    assert "403" in definitions.alerts.last_error
    assert "grant get/list/watch on globalalerts.projectcalico.org" in definitions.alerts.last_error
