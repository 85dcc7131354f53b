"""The alerting rules, checked and unit-tested by Debian's promtool (the file the chart ships)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from demo.assets import PROMETHEUS_EXAMPLE, RULES_FILE, RULES_TEST_FILE
from tests.stack.metric_names import KNOWN, metrics_in

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rule_file_passes_promtool_check() -> None:
    result = promtool("check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULES_TEST_FILE.name, cwd=RULES_TEST_FILE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_use_the_chart_rule_file() -> None:
    doc = yaml.safe_load(RULES_TEST_FILE.read_text())
    [rule_file] = doc["rule_files"]
    assert (RULES_TEST_FILE.parent / rule_file).resolve() == RULES_FILE


def test_every_alert_has_a_firing_unit_test() -> None:
    doc = yaml.safe_load(RULES_TEST_FILE.read_text())
    fired = {
        case["alertname"] for test in doc["tests"] for case in test.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    alerts = {str(rule["alert"]) for rule in rules()}
    assert alerts - fired == set(), "alerts without a unit test where they fire"


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """promtool really evaluates: the per-policy alert does not fire on 1 packet/s."""
    (tmp_path / "t.yaml").write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(RULES_FILE)],
                "evaluation_interval": "15s",
                "tests": [
                    {
                        "interval": "15s",
                        "input_series": [
                            {"series": 'calico_denied_packets{policy="p",srcIP="10.0.0.1"}', "values": "0+15x20"}
                        ],
                        "alert_rule_test": [
                            {
                                "eval_time": "4m",
                                "alertname": "CalicoDeniedPacketsRateHigh",
                                "exp_alerts": [{"exp_labels": {"severity": "warning", "policy": "p"}}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = promtool("test", "rules", "t.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "CalicoDeniedPacketsRateHigh" in result.stdout + result.stderr


@pytest.mark.parametrize("rule", rules(), ids=lambda r: str(r["alert"]))
def test_rules_use_contract_metrics_and_labels(rule: dict[str, object]) -> None:
    expr = str(rule["expr"])
    used = metrics_in(expr)
    assert used <= KNOWN, f"unknown metric names {used - KNOWN}"
    labels = rule["labels"]
    assert isinstance(labels, dict)
    assert labels["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert isinstance(annotations, dict)
    assert {"summary", "description"} <= set(annotations)
    if "calico_denied" in expr and "srcIP" in expr:
        assert "srcIP" in expr and ("policy" in expr or "overflow" in expr)


def test_denied_rules_group_by_policy_and_source() -> None:
    by_name = {str(r["alert"]): str(r["expr"]) for r in rules()}
    assert "by (policy)" in by_name["CalicoDeniedPacketsRateHigh"]
    assert "by (policy, srcIP)" in by_name["CalicoDeniedSourceRateHigh"]
    assert 'up{job="policywatch-collector"}' in by_name["PolicywatchCollectorDown"]


def test_example_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", PROMETHEUS_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    cfg = yaml.safe_load(PROMETHEUS_EXAMPLE.read_text())
    [rule_file] = cfg["rule_files"]
    assert (PROMETHEUS_EXAMPLE.parent / rule_file).resolve() == RULES_FILE
    jobs = {job["job_name"]: job["metrics_path"] for job in cfg["scrape_configs"]}
    assert jobs == {
        "policywatch-collector": "/metrics",
        "policywatch-collector-health": "/collector/metrics",
        "policywatch-evaluator": "/metrics",
    }
