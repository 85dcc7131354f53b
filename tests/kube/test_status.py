"""Status writes through the status subresource of the real kube-apiserver: a stale resourceVersion is a
conflict, answered by reading the object again; the spec and metadata others wrote are kept."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from api.kube_controller.client import KubeClient, load_kubeconfig
from api.kube_controller.status import KubeAlertRepository, StatusWriter
from api.kube_controller.sync import ResourceCache
from api.resources import GLOBAL_ALERT
from evaluator.alerts import AlertStatus, ErrorCondition
from tests.fixtures.kube import KubeCluster
from tests.kube.conftest import alert_yaml, status_of, unique


def test_stale_version_conflicts_and_is_retried(crds: KubeCluster, caplog: pytest.LogCaptureFixture) -> None:
    name = unique("status-conflict")
    crds.kubectl("apply", "-f", "-", input_text=alert_yaml(name))
    client = KubeClient(load_kubeconfig(crds.kubeconfig))
    try:
        cache = ResourceCache(GLOBAL_ALERT)
        cache.replace_all(*client.list("globalalerts"))
        stale = cache.get(name)
        assert stale is not None and stale.alert is not None
        # Someone else changes the object after the controller read it: its resourceVersion is stale now.
        crds.kubectl("label", "globalalert", name, "team=network")
        writer = StatusWriter(client, cache)
        repository = KubeAlertRepository(cache, writer)
        now = datetime.now(UTC)
        caplog.set_level(logging.INFO, logger="httpx")  # the requests as sent and answered
        conditions = tuple(ErrorCondition("CatchUpLimit", f"skipped {i}") for i in range(15))
        repository.write_status(
            name,
            AlertStatus(
                lastUpdate=now, active=True, healthy=True, executionState="executed", errorConditions=conditions
            ),
        )
        assert writer.writes == 1
        answers = [r.getMessage().rsplit('"', 2)[-2] for r in caplog.records if "PUT" in r.getMessage()]
        assert answers == ["HTTP/1.1 409 Conflict", "HTTP/1.1 200 OK"]
        shown = status_of(crds, name)
        assert shown["executionState"] == "executed" and shown["healthy"] is True
        assert [c["message"] for c in shown["errorConditions"]] == [f"skipped {i}" for i in range(5, 15)]  # newest 10
        assert crds.kubectl("get", "globalalert", name, "-o", "jsonpath={.metadata.labels.team}").stdout == "network"
        fresh = cache.get(name)
        assert fresh is not None and fresh.resource_version != stale.resource_version  # the write's answer
        assert repository.get_status(name) == fresh.status and fresh.status is not None
        assert fresh.status.executionState == "executed"

        crds.kubectl("delete", "globalalert", name)
        repository.write_status(name, AlertStatus(lastUpdate=now, executionState="executed"))  # gone: nothing to do
        assert writer.writes == 1 and writer.pending(name) is None
    finally:
        client.close()
        crds.kubectl("delete", "globalalert", name, "--ignore-not-found")
