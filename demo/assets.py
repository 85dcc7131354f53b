"""Where the monitoring files live: one copy each, shipped by the Helm chart, loaded by the demo, run by the tests."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "helm" / "policywatch"
RULES_FILE = CHART_DIR / "files" / "prometheus" / "policywatch-rules.yaml"
DASHBOARDS_DIR = CHART_DIR / "files" / "dashboards"
RULES_TEST_FILE = REPO_ROOT / "deploy" / "prometheus" / "policywatch-rules.test.yaml"
PROMETHEUS_EXAMPLE = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_EXAMPLE = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

# Scrape job names the rules and dashboards rely on (the chart's monitors set the same ones).
JOB_COLLECTOR = "policywatch-collector"
JOB_COLLECTOR_HEALTH = "policywatch-collector-health"
JOB_EVALUATOR = "policywatch-evaluator"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))
