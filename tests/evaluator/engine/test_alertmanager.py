"""Firing and resolved alert instances reach a real Alertmanager, which forwards them to a webhook."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from devstack.services import WebhookReceiver, free_port, wait_until
from evaluator.engine.metrics import EngineMetrics
from evaluator.engine.model import Bucket
from evaluator.engine.notify import AlertmanagerNotifier, Notification, NotifyError
from evaluator.engine.scheduler import Scheduler, SchedulerConfig
from tests.evaluator.engine.engine_helpers import FakeClock, MemoryRepository, ScriptedStore, create_engine_tables, spec

pytestmark = pytest.mark.prometheus


def test_firing_and_resolved_reach_alertmanager(
    alertmanager: Callable[..., Any], webhook: WebhookReceiver, tmp_path: Any
) -> None:
    am = alertmanager(
        {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "source_namespace"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}],
        }
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path}/engine.db")
    create_engine_tables(engine)
    clock = FakeClock()
    repo = MemoryRepository()
    store = ScriptedStore(buckets=lambda w: [Bucket(("shop",), 12)])
    scheduler = Scheduler(
        engine=engine,
        repository=repo,
        log_store=store,
        notifier=AlertmanagerNotifier(am.url),
        config=SchedulerConfig(sync_interval=0, spread=False),
        clock=clock,
        metrics=EngineMetrics(CollectorRegistry()),
    )
    repo.put("denied-burst", spec(description="${count} denied flows from ${source_namespace}", severity=80))
    # Alertmanager compares endsAt with its own clock: run the first period a minute ago, the second now.
    clock.now = datetime.now(UTC) - spec().period
    scheduler.step()
    active = wait_until(lambda: [a for a in am.alerts() if a["status"]["state"] == "active"], timeout=20)
    assert active[0]["labels"] == {"alertname": "denied-burst", "severity": "80", "source_namespace": "shop"}
    assert active[0]["annotations"] == {"description": "12 denied flows from shop"}
    firing = wait_until(lambda: webhook.alerts("firing"), timeout=20, what="firing notification at the webhook")
    assert firing[0]["labels"]["alertname"] == "denied-burst"
    store.buckets = lambda w: []
    clock.now = datetime.now(UTC)
    assert scheduler.step() == 1
    resolved = wait_until(lambda: webhook.alerts("resolved"), timeout=20, what="resolved notification at the webhook")
    assert resolved[0]["labels"] == {"alertname": "denied-burst", "severity": "80", "source_namespace": "shop"}
    assert resolved[0]["annotations"]["description"] == "12 denied flows from shop"
    engine.dispose()


def test_alertmanager_errors_are_reported() -> None:
    notifier = AlertmanagerNotifier(f"http://127.0.0.1:{free_port()}", timeout=2)
    now = datetime.now(UTC)
    with pytest.raises(NotifyError, match="unreachable"):
        notifier.send([Notification({"alertname": "x"}, {}, now, now)])
