"""What ``helm template`` does with helm/policywatch, through the test renderer: values merged, Helm's built-in
objects (.Values, .Release, .Chart, .Files), every template rendered and split into YAML documents."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helm.gotemplate import Node, Renderer, TemplateError, parse


class Files:
    """Helm's .Files: the chart's files (templates/ excluded)."""

    def __init__(self, chart_dir: Path) -> None:
        self._dir = chart_dir

    def Get(self, path: str) -> str:  # Helm's name
        target = self._dir / path
        return target.read_text() if target.is_file() else ""

    def Glob(self, pattern: str) -> dict[str, str]:  # Helm's name
        paths = sorted(
            str(p.relative_to(self._dir)) for p in self._dir.rglob("*") if p.is_file() and "templates" not in p.parts
        )
        return {p: self.Get(p) for p in paths if fnmatch.fnmatchcase(p, pattern)}


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Rendered:
    manifests: dict[str, list[dict[str, Any]]]  # template file -> its YAML documents
    notes: str

    def all(self) -> list[dict[str, Any]]:
        return [doc for docs in self.manifests.values() for doc in docs]

    def find(self, kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
        return [d for d in self.all() if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def render_chart(
    chart_dir: Path,
    overlay: Mapping[str, Any] | None = None,
    *,
    release: str = "policywatch",
    namespace: str = "policywatch",
) -> Rendered:
    """What ``helm template <release> <chart> -n <namespace> -f overlay`` would print, split per template."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = _merge(yaml.safe_load((chart_dir / "values.yaml").read_text()), overlay or {})
    root = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion", "")},
        "Files": Files(chart_dir),
    }
    templates = sorted((chart_dir / "templates").iterdir())
    defines: dict[str, list[Node]] = {}
    parsed: dict[str, list[Node]] = {}
    for path in templates:
        nodes, found = parse(path.read_text())
        defines.update(found)
        parsed[path.name] = nodes
    renderer = Renderer(defines, root)
    manifests: dict[str, list[dict[str, Any]]] = {}
    notes = ""
    for name, nodes in parsed.items():
        if name.startswith("_"):
            continue
        text = renderer.render(nodes, root)
        if name == "NOTES.txt":
            notes = text
            continue
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as err:
            raise TemplateError(f"{name} renders to invalid YAML: {err}\n{text}") from None
        manifests[name] = docs
    return Rendered(manifests, notes)
