"""The evaluator's own metrics (names are a contract with the dashboards and rules of the stack)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class _AlertGauges(Collector):
    """Per-alert gauges whose label sets come and go with the alerts: built fresh on each collect()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._healthy: dict[str, bool] = {}
        self._firing: dict[str, int] = {}
        self._alerts = 0

    def set_alerts(self, names: Iterable[str]) -> None:
        current = set(names)
        with self._lock:
            self._alerts = len(current)
            for gone in set(self._healthy) - current:
                del self._healthy[gone]
            for gone in set(self._firing) - current:
                del self._firing[gone]

    def set_healthy(self, alert: str, healthy: bool) -> None:
        with self._lock:
            self._healthy[alert] = healthy

    def set_firing(self, alert: str, count: int) -> None:
        with self._lock:
            self._firing[alert] = count

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            healthy = dict(self._healthy)
            firing = dict(self._firing)
            alerts = self._alerts
        total = GaugeMetricFamily("policywatch_evaluator_alerts", "GlobalAlerts known to the scheduler.")
        total.add_metric([], alerts)
        yield total
        health = GaugeMetricFamily(
            "policywatch_evaluator_alert_healthy",
            "1 when the alert's last run succeeded, 0 when it failed.",
            labels=["alert"],
        )
        for name, ok in sorted(healthy.items()):
            health.add_metric([name], 1.0 if ok else 0.0)
        yield health
        instances = GaugeMetricFamily(
            "policywatch_evaluator_firing_instances",
            "Alert instances (aggregation patterns) firing now.",
            labels=["alert"],
        )
        for name, count in sorted(firing.items()):
            instances.add_metric([name], count)
        yield instances


class EngineMetrics:
    """The engine's metrics in ``registry``; built once per process (per app) by its owner and passed on."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "policywatch_evaluator_alert_runs",
            "Alert runs by outcome (ok or error).",
            ["alert", "outcome"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "policywatch_evaluator_alert_run_duration_seconds",
            "Time one alert run takes (query, state and events).",
            ["alert"],
            registry=registry,
        )
        self.events = Counter(
            "policywatch_evaluator_events",
            "Events written, by alert and severity.",
            ["alert", "severity"],
            registry=registry,
        )
        self.lateness = Histogram(
            "policywatch_evaluator_schedule_lateness_seconds",
            "How long after its scheduled time an alert run started.",
            buckets=_LATENESS_BUCKETS,
            registry=registry,
        )
        self.notifications = Counter(
            "policywatch_evaluator_notifications",
            "Alerts sent to Alertmanager, by outcome (ok or error).",
            ["outcome"],
            registry=registry,
        )
        self.gauges = _AlertGauges()
        registry.register(self.gauges)
