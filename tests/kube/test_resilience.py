"""The controller when things move under it: the real kube-apiserver restarted mid-watch (the controller lists
again and carries on, changes made after the restart are seen), and two evaluator replicas on one PostgreSQL
database watching the same GlobalAlerts (each alert-period runs once; status written by whichever ran it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.db import migrate
from api.kube_controller.client import KubeClient, load_kubeconfig
from api.kube_controller.status import StatusWriter
from api.kube_controller.sync import ResourceCache
from api.resources import GLOBAL_ALERT
from evaluator.alerts import AlertStatus, ErrorCondition
from evaluator.engine.tables import alert_runs
from tests.api.support import EvaluatorProcess
from tests.fixtures.kube import KubeCluster
from tests.kube.conftest import alert_yaml, start_evaluator, status_of, unique, wait_for


def kill_apiserver(cluster: KubeCluster) -> list[str]:
    """Kill the session's kube-apiserver, as a crash would (etcd keeps running, with the data); returns its
    command line. (A SIGTERM would wait up to a minute for the open watches of custom resources.)"""
    assert cluster.directory is not None
    pid = int((cluster.directory / "apiserver.pid").read_text())
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid), "the kube-apiserver to exit")
    return argv


def running(pid: int) -> bool:
    """Alive and not a zombie (the tool's processes are reparented to a PID 1 that may not reap them)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def start_apiserver(cluster: KubeCluster, argv: list[str]) -> None:
    assert cluster.directory is not None
    with (cluster.directory / "apiserver.log").open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (cluster.directory / "apiserver.pid").write_text(str(process.pid))  # the fixture's stop ends this one
    wait_for(
        lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
        "the restarted kube-apiserver to be ready",
        timeout=60,
    )


def executed(cluster: KubeCluster, name: str) -> bool:
    return status_of(cluster, name).get("executionState") == "executed"


def test_apiserver_restart_mid_watch(crds: KubeCluster, tmp_path: Path) -> None:
    if crds.directory is None:
        pytest.skip("restarts the session's own kube-apiserver (POLICYWATCH_TEST_KUBECONFIG points elsewhere)")
    before, after = unique("resync-before"), unique("resync-after")
    crds.kubectl("apply", "-f", "-", input_text=alert_yaml(before))
    evaluator = start_evaluator(tmp_path, crds.kubeconfig)
    try:
        wait_for(lambda: executed(crds, before), f"{before} run")
        # A status write while the API server is away is kept, and written once it answers again.
        client = KubeClient(load_kubeconfig(crds.kubeconfig))
        cache = ResourceCache(GLOBAL_ALERT)
        cache.replace_all(*client.list("globalalerts"))
        writer = StatusWriter(client, cache)
        kept = AlertStatus(
            active=True, healthy=True, executionState="executed", errorConditions=(ErrorCondition("Test", "kept"),)
        )
        argv = kill_apiserver(crds)
        try:
            assert writer.write(before, kept) is False
            assert writer.pending(before) is kept
        finally:
            start_apiserver(crds, argv)
        writer.flush()
        client.close()
        assert writer.pending(before) is None
        assert status_of(crds, before)["errorConditions"] == [{"type": "Test", "message": "kept"}]

        crds.kubectl("apply", "-f", "-", input_text=alert_yaml(after))
        crds.kubectl("delete", "globalalert", before)
        wait_for(lambda: executed(crds, after), f"{after}, applied after the restart, run", timeout=60)
        wait_for(
            lambda: httpx.get(f"{evaluator.url}/globalalerts/{before}", timeout=5).status_code == 404,
            f"{before}, deleted after the restart, gone from the evaluator",
        )
    finally:
        evaluator.stop()
        crds.kubectl("delete", "globalalert", before, after, "--ignore-not-found")
    log = evaluator.log.read_text(errors="replace")
    assert "globalalerts: list/watch failed" in log  # the watch broke, and a new list resumed it
    assert "Traceback" not in log


def all_executed(cluster: KubeCluster, names: list[str]) -> bool:
    items = json.loads(cluster.kubectl("get", "globalalerts", *names, "-o", "json").stdout)["items"]
    return all(i.get("status", {}).get("executionState") == "executed" for i in items)


@pytest.mark.postgres
def test_two_replicas_run_each_alert_period_once(crds: KubeCluster, pg_database: str, tmp_path: Path) -> None:
    migrate(pg_database)
    names = [unique(f"replica-{i}") for i in range(6)]
    crds.kubectl("apply", "-f", "-", input_text="---\n".join(alert_yaml(n) for n in names))
    replicas = [EvaluatorProcess(tmp_path / f"replica-{n}") for n in range(2)]
    try:
        for replica in replicas:
            replica.tmp_path.mkdir()
        args = ("--definitions=kubernetes", "--kubeconfig", str(crds.kubeconfig), "--no-migrate")
        with ThreadPoolExecutor(2) as pool:  # both start together, as a Deployment's replicas do
            list(pool.map(lambda r: r.start(*args, "--database-url", pg_database), replicas))
        wait_for(lambda: all_executed(crds, names), "every alert run")
        time.sleep(1)  # give a second run of the same period, if there were one, time to commit
    finally:
        for replica in replicas:
            replica.stop()
        crds.kubectl("delete", "globalalert", *names, "--ignore-not-found")
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alert_runs.c.alert, alert_runs.c.scheduled_for)).all()
    engine.dispose()
    ours = [(alert, scheduled) for alert, scheduled in rows if alert in names]
    # After its prompt first run an alert may move to its own slot a few seconds later (scheduler spread):
    # several runs per alert are fine, two runs of one alert-period are not.
    assert {a for a, _ in ours} == set(names)
    assert len(set(ours)) == len(ours), f"an alert-period ran twice: {sorted(ours)}"
    for replica in replicas:
        log = replica.log.read_text(errors="replace")
        assert "Traceback" not in log and "already committed" not in log
