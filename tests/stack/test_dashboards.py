"""Static checks of the Grafana dashboards the chart ships (their PromQL runs live in test_stack_e2e.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.assets import dashboard_files
from demo.dashboards import DEFAULT_SUBSTITUTIONS, PanelQuery, all_panel_queries, panel_queries
from tests.stack.metric_names import COLLECTOR_DATA, EVALUATOR, KNOWN, metrics_in

DASHBOARDS = dashboard_files()


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_the_three_dashboards_exist() -> None:
    assert {load(p)["uid"] for p in DASHBOARDS} == {
        "policywatch-denied",
        "policywatch-collector",
        "policywatch-globalalerts",
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    doc = load(path)
    assert doc["schemaVersion"] >= 36
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    used_vars = set()
    for panel in doc["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24
        for target in panel["targets"]:
            used_vars |= set(re.findall(r"\$(\w+)", target["expr"]))
    declared = set(variables) | {"__rate_interval", "__range"}
    assert used_vars <= declared, f"undeclared variables {used_vars - declared}"
    assert set(DEFAULT_SUBSTITUTIONS) >= {f"${v}" for v in used_vars}


def test_panels_use_only_contract_metrics() -> None:
    used: set[str] = set()
    for query in all_panel_queries():
        names = metrics_in(query.expr)
        assert names <= KNOWN, f"{query.label}: unknown metrics {names - KNOWN}"
        used |= names
    # The dashboards cover the denied metrics and every evaluator metric.
    assert COLLECTOR_DATA <= used
    assert EVALUATOR <= used


def test_denied_dashboard_shows_policy_source_and_node() -> None:
    [path] = [p for p in DASHBOARDS if load(p)["uid"] == "policywatch-denied"]
    exprs = " ".join(q.expr for q in panel_queries(path))
    for grouping in ("by (policy)", "by (srcIP)", "by (instance)", "by (policy, srcIP)"):
        assert grouping in exprs
    assert "calico_denied_bytes" in exprs


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), after Grafana's variable substitution."""
    queries = all_panel_queries()
    rules = [{"record": f"panel:query_{i}", "expr": q.promql()} for i, q in enumerate(queries)]
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_substitution() -> None:
    query = PanelQuery("d", "p", "A", 'rate(x{instance=~"$instance"}[$__rate_interval]) + y[$__range]', False)
    assert query.promql() == 'rate(x{instance=~".*"}[1m]) + y[10m]'
