"""Read the Grafana dashboards' PromQL so it can be run against a plain Prometheus (tests and the demo)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from demo.assets import dashboard_files

# What Grafana substitutes before it sends a panel's query; values fit a short local run (5 s scrapes).
DEFAULT_SUBSTITUTIONS: Mapping[str, str] = {
    "$__rate_interval": "1m",
    "$__range": "10m",
    "$instance": ".*",
}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def label(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"

    def promql(self, substitutions: Mapping[str, str] = DEFAULT_SUBSTITUTIONS) -> str:
        text = self.expr
        # Longest names first, so "$__range" never eats part of a longer variable.
        for name in sorted(substitutions, key=len, reverse=True):
            text = text.replace(name, substitutions[name])
        return text


def panel_queries(path: Path) -> list[PanelQuery]:
    doc = json.loads(path.read_text())
    queries = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            queries.append(
                PanelQuery(
                    dashboard=str(doc["title"]),
                    panel=str(panel["title"]),
                    ref_id=str(target["refId"]),
                    expr=str(target["expr"]),
                    instant=bool(target.get("instant", False)),
                )
            )
    return queries


def all_panel_queries() -> list[PanelQuery]:
    return [query for path in dashboard_files() for query in panel_queries(path)]
