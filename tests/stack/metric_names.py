"""The metric names other components export (DESIGN.md, interfaces 5): rules and dashboards may use only these."""

from __future__ import annotations

import re

COLLECTOR_DATA = {"calico_denied_packets", "calico_denied_bytes"}
COLLECTOR_HEALTH = {
    "policywatch_collector_drain_duration_seconds",
    "policywatch_collector_map_entries",
    "policywatch_collector_series",
    "policywatch_collector_overflow_packets_total",
    "policywatch_collector_ruleset_refreshes_total",
    "policywatch_collector_policy_conflicts",
    "policywatch_collector_bpf_run_time_seconds_total",
    "policywatch_collector_bpf_run_count_total",
    "policywatch_collector_build_info",
    "policywatch_collector_unattributed_drops_total",
    "policywatch_collector_unattributed_bytes_total",
    "policywatch_collector_start_time_seconds",
    "policywatch_collector_flow_records_shipped_total",
}
EVALUATOR = {
    "policywatch_evaluator_alert_runs_total",
    "policywatch_evaluator_alert_run_duration_seconds",
    "policywatch_evaluator_events_total",
    "policywatch_evaluator_alert_healthy",
    "policywatch_evaluator_firing_instances",
    "policywatch_evaluator_schedule_lateness_seconds",
    "policywatch_evaluator_alerts",
    "policywatch_evaluator_http_requests_total",
}
HISTOGRAMS = {
    "policywatch_collector_drain_duration_seconds",
    "policywatch_evaluator_alert_run_duration_seconds",
    "policywatch_evaluator_schedule_lateness_seconds",
}
KNOWN = COLLECTOR_DATA | COLLECTOR_HEALTH | EVALUATOR | {"up"}

_METRIC_RE = re.compile(r"\b((?:calico|policywatch)_[a-zA-Z0-9_]+)")


def metrics_in(promql: str) -> set[str]:
    """Names of calico_/policywatch_ metrics used in a PromQL expression (histogram suffixes folded)."""
    found = set()
    for name in _METRIC_RE.findall(promql):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name.removesuffix(suffix)
            if base != name and base in HISTOGRAMS:
                name = base
                break
        found.add(name)
    return found
