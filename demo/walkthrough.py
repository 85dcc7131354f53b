"""The demo's story: each step starts a part of the chain, waits for its visible result and prints it.

The end-to-end test runs the same steps and asserts on what they collected (``Walkthrough`` attributes).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from demo.assets import RULES_FILE
from demo.dashboards import PanelQuery, all_panel_queries
from demo.samples import ALERT_NAME, FLOW_LOGS_FLUSH_INTERVAL, GLOBAL_ALERT
from demo.stack import DemoStack, StackError
from demo.topology import (
    DB_IPS,
    DENIED_SECONDS,
    FRONTEND_IPS,
    MARK_DB,
    MARK_FRONTEND,
    MARK_UNNAMED,
    POLICY_DB,
    POLICY_FRONTEND,
)
from devstack.services import wait_until

# The fallback label of a mark that no rule comment names is a demo series too.
DEMO_POLICIES = (POLICY_DB, POLICY_FRONTEND, f"mark/{MARK_UNNAMED:#x}")
# (alert, policy, srcIP or None): what the demo traffic must make Prometheus fire.
EXPECTED_ALERTS = (
    ("CalicoDeniedNewSource", POLICY_DB, "10.77.0.1"),
    ("CalicoDeniedSourceRateHigh", POLICY_DB, "10.77.0.1"),
    ("CalicoDeniedPacketsRateHigh", POLICY_DB, None),
)


def is_demo_series(line: str) -> bool:
    """A /metrics sample line of the demo's own traffic (the collector also counts the host's other drops)."""
    return any(f'policy="{p}"' in line for p in DEMO_POLICIES)


class Walkthrough:
    def __init__(self, stack: DemoStack, *, alert_timeout: float = 240.0) -> None:
        self.stack = stack
        self.say: Callable[[str], None] = stack.say
        self.alert_timeout = alert_timeout
        self.metric_lines: list[str] = []
        self.unattributed = 0.0  # the unmarked drop, from /collector/metrics
        self.alert_answer: Any = None
        self.events: list[dict[str, Any]] = []
        self.firing: dict[tuple[str, str, str | None], dict[str, Any]] = {}
        self.delivered: list[dict[str, Any]] = []
        self.notified: list[dict[str, Any]] = []
        self.panels_with_data: list[PanelQuery] = []
        self.panels_without_data: list[PanelQuery] = []

    def run(self) -> None:
        self.network()
        self.collector()
        self.monitoring()
        self.evaluator()
        self.prometheus_alerts()
        self.global_alert()
        self.dashboards()
        self.where_to_look()

    # -- steps ----------------------------------------------------------------------------------------------
    def network(self) -> None:
        self.say("[1/7] Two namespaces with tagged deny rules, and traffic they deny")
        self.stack.start_network()
        topo = self.stack.topology
        self.say(f"      {topo.frontend} ({', '.join(FRONTEND_IPS)})  <-veth->  {topo.db} ({', '.join(DB_IPS)})")
        self.say(f'      {topo.db}: udp dport 5432 meta mark set {MARK_DB:#x} drop comment "{POLICY_DB}"')
        self.say(
            f'      {topo.frontend}: udp dport 53 meta mark set {MARK_FRONTEND:#x} drop comment "{POLICY_FRONTEND}"'
        )
        self.say(f"      {topo.db}: udp dport 9 drop   (no mark: no policy made it, not a calico_denied series)")
        for flow in topo.flows():
            count = f", {flow.count} in all" if flow.count is not None else ""
            self.say(
                f"      sending {flow.rate:g}/s{count}  {flow.src} -> {flow.dst}:{flow.port}/udp"
                f"  (denied by {flow.policy})"
            )

    def collector(self) -> None:
        self.say("\n[2/7] The collector: eBPF on skb:kfree_skb, policy names from the nft rule comments")
        self.stack.enable_bpf_stats()
        self.stack.start_collector()
        self.stack.start_traffic()  # now: the collector sees every denied datagram from the first

        def demo_lines() -> list[str]:
            lines = [line for line in self.stack.denied_lines() if is_demo_series(line)]
            have = {p for p in DEMO_POLICIES if any(f'policy="{p}"' in line for line in lines)}
            return lines if have == set(DEMO_POLICIES) else []

        self.metric_lines = wait_until(demo_lines, timeout=60, interval=1, what="the demo's series on /metrics")
        db = self.stack.topology.db
        self.unattributed = wait_until(
            lambda: self.stack.unattributed_drops().get(db, 0.0), timeout=60, interval=1, what="the unmarked drop"
        )
        self.say(
            f"      GET {self.stack.collector_url}/metrics   (the demo's series; other drops on this host show too)"
        )
        for line in self.metric_lines:
            self.say(f"      {line}")
        self.say(f"      GET {self.stack.collector_url}/collector/metrics   (drops no policy made, per namespace)")
        self.say(f'      policywatch_collector_unattributed_drops_total{{namespace="{db}"}} {self.unattributed:g}')

    def monitoring(self) -> None:
        self.say("\n[3/7] Prometheus with the chart's alerting rules, Alertmanager with a webhook receiver")
        self.stack.start_monitoring()
        prometheus = self.stack.prometheus
        assert prometheus is not None
        wait_until(
            lambda: prometheus.targets_up() and all(h == "up" for h in prometheus.targets_up().values()),
            timeout=60,
            interval=1,
            what="Prometheus to scrape the collector",
        )
        self.say(f"      rules: {RULES_FILE}")
        for url, health in sorted(prometheus.targets_up().items()):
            self.say(f"      scrape {url}: {health}")

    def evaluator(self) -> None:
        self.say("\n[4/7] The GlobalAlert evaluator: the collector ships its denied-flow records there")
        self.stack.start_evaluator()
        self.stack.scrape_prometheus_again()
        self.say(
            f"      collector --flow-logs -> POST {self.stack.evaluator_url}/_bulk every {FLOW_LOGS_FLUSH_INTERVAL} s"
            " (one record per denied flow: drop -> flow record -> GlobalAlert event)"
        )

    def prometheus_alerts(self) -> None:
        self.say("\n[5/7] Prometheus alerts on the denied traffic, delivered through Alertmanager")
        self.say("      (the rate rules hold for 1 minute before firing)")

        def all_firing() -> bool:
            for alert in self.stack.firing_alerts():
                labels = alert["labels"]
                for name, policy, src in EXPECTED_ALERTS:
                    key = (name, policy, src)
                    if (
                        labels.get("alertname"),
                        labels.get("policy"),
                        labels.get("srcIP"),
                    ) == key and key not in self.firing:
                        self.firing[key] = alert
                        self.say(f"      FIRING {name}  {labels.get('severity')}: {alert['annotations']['summary']}")
            return len(self.firing) == len(EXPECTED_ALERTS)

        wait_until(all_firing, timeout=self.alert_timeout, interval=2, what="the Prometheus alerts to fire")
        webhook = self.stack.webhook
        assert webhook is not None

        def delivered() -> list[dict[str, Any]]:
            return [a for a in webhook.alerts() if a.get("labels", {}).get("policy") == POLICY_DB]

        self.delivered = wait_until(delivered, timeout=60, interval=1, what="Alertmanager to call the webhook")
        names = sorted({a["labels"]["alertname"] for a in self.delivered})
        self.say(
            f"      Alertmanager -> webhook {webhook.url}: {len(self.delivered)} alerts for {POLICY_DB}"
            f" ({', '.join(names)})"
        )

    def global_alert(self) -> None:
        """Once the fixed-count senders to 5432 are done and flushed: the GlobalAlert, and its events' exact sums."""
        self.say("\n[6/7] A GlobalAlert over the collector's flow records, once the senders to 5432 are done")
        self.stack.topology.wait_fixed_senders(timeout=DENIED_SECONDS * 2 + 60)
        self.stack.wait_flows_stored()
        self.alert_answer = self.stack.create_alert()
        spec = GLOBAL_ALERT["spec"]
        self.say(f"      POST {self.stack.evaluator_url}/globalalerts  {ALERT_NAME}: query {spec['query']!r},")
        self.say(
            f"           aggregateBy {spec['aggregateBy']}, {spec['metric']}({spec['field']}) {spec['condition']} "
            f"{spec['threshold']}, period {spec['period']}"
        )
        self.events = wait_until(self.stack.events, timeout=self.alert_timeout, interval=1, what="GlobalAlert events")
        self.say(f"      GET {self.stack.evaluator_url}/events?alert={ALERT_NAME}:")
        for event in self.events:
            self.say(f"      event  {event.get('time')}  severity {event.get('severity')}: {event.get('description')}")
            self.say(f"             record {json.dumps(event.get('record'), sort_keys=True)}")
        alertmanager = self.stack.alertmanager
        assert alertmanager is not None

        def notified() -> list[dict[str, Any]]:
            return [a for a in alertmanager.alerts() if a.get("labels", {}).get("alertname") == ALERT_NAME]

        self.notified = wait_until(notified, timeout=60, interval=1, what="the GlobalAlert to reach Alertmanager")
        self.say(f"      Alertmanager {alertmanager.url}/api/v2/alerts holds {len(self.notified)} for {ALERT_NAME}:")
        for alert in self.notified:
            labels = {k: v for k, v in sorted(alert["labels"].items()) if k != "alertname"}
            self.say(f"      {json.dumps(labels)}")

    def dashboards(self) -> None:
        self.say("\n[7/7] Grafana dashboards: their panel queries against this Prometheus")
        prometheus = self.stack.prometheus
        assert prometheus is not None
        self.panels_with_data, self.panels_without_data = [], []
        for query in all_panel_queries():
            try:
                result = prometheus.query(query.promql())
            except RuntimeError as err:
                raise StackError(f"panel {query.label}: {err}") from None
            (self.panels_with_data if result else self.panels_without_data).append(query)
        total = len(self.panels_with_data) + len(self.panels_without_data)
        self.say(f"      {len(self.panels_with_data)} of {total} panel queries return data")
        for query in self.panels_without_data:
            self.say(f"      no data yet: {query.label}")

    def where_to_look(self) -> None:
        prom = self.stack.prometheus
        am = self.stack.alertmanager
        assert prom is not None and am is not None
        graph = urllib.parse.quote("sum by (policy, srcIP) (rate(calico_denied_packets[1m]))")
        self.say("\nWhere to look:")
        self.say(f"  denied-packet metrics  {self.stack.collector_url}/metrics")
        self.say(f"  collector health       {self.stack.collector_url}/collector/metrics")
        self.say(f"  Prometheus alerts      {prom.url}/alerts")
        self.say(f"  Prometheus graph       {prom.url}/graph?g0.expr={graph}&g0.tab=0")
        self.say(f"  Alertmanager           {am.url}/#/alerts")
        self.say(f"  GlobalAlerts           {self.stack.evaluator_url}/globalalerts/{ALERT_NAME}")
        self.say(f"  GlobalAlert events     {self.stack.evaluator_url}/events?alert={ALERT_NAME}")
        self.say(f"  evaluator metrics      {self.stack.evaluator_url}/metrics")
