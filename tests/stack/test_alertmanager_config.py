"""The example Alertmanager configuration: valid for Debian's amtool, and routing by severity as documented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from demo.assets import ALERTMANAGER_EXAMPLE, RULES_FILE

AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


def amtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_config_passes_amtool_check() -> None:
    result = amtool("check-config", ALERTMANAGER_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 receivers" in result.stdout


def test_amtool_rejects_a_broken_config(tmp_path: Path) -> None:
    doc = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    doc["route"]["routes"][0]["receiver"] = "no-such-receiver"
    broken = tmp_path / "am.yml"
    broken.write_text(yaml.safe_dump(doc))
    result = amtool("check-config", broken)
    assert result.returncode != 0
    assert "no-such-receiver" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("severity", "receivers"),
    [
        ("critical", "policywatch-pagerduty,policywatch-webhook"),
        ("warning", "policywatch-opsgenie,policywatch-webhook"),
        ("info", "policywatch-webhook"),
        ("100", "policywatch-opsgenie,policywatch-webhook"),  # a GlobalAlert's numeric severity
        ("80", "policywatch-opsgenie,policywatch-webhook"),
        ("79", "policywatch-webhook"),
        ("8", "policywatch-webhook"),
    ],
)
def test_routes_by_severity(severity: str, receivers: str) -> None:
    result = amtool(
        "config", "routes", "test", f"--config.file={ALERTMANAGER_EXAMPLE}", f"severity={severity}", "alertname=X"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receivers


def test_receivers_are_webhook_pagerduty_opsgenie() -> None:
    doc = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    kinds = {r["name"]: {k for k in r if k.endswith("_configs")} for r in doc["receivers"]}
    assert kinds == {
        "policywatch-webhook": {"webhook_configs"},
        "policywatch-pagerduty": {"pagerduty_configs"},
        "policywatch-opsgenie": {"opsgenie_configs"},
    }


def test_every_rule_severity_has_a_route() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())
    severities = {r["labels"]["severity"] for g in rules["groups"] for r in g["rules"]}
    doc = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    routed = {m.split("=", 1)[1].strip('"') for route in doc["route"]["routes"] for m in route["matchers"]}
    assert severities <= routed
