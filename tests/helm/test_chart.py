"""Static tests of helm/policywatch beside the real helm runs of test_render.py: the schema itself, every value in
it and commented, every `.Values.x` a template reads defined (helm would render a missing one as empty), and that
the chart ships the very rule and dashboard files the other tests run."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from demo.assets import CHART_DIR, RULES_FILE, dashboard_files

TEMPLATES = sorted((CHART_DIR / "templates").glob("*"))
SCHEMA: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
CI_FILES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))


def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


def test_schema_is_valid_draft7() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_default_values_match_schema() -> None:
    assert schema_errors(VALUES) == []


def test_there_are_ci_scenarios() -> None:
    assert {p.name for p in CI_FILES} >= {"default-values.yaml", "full-values.yaml", "podmonitor-values.yaml"}


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.name)
def test_ci_values_match_schema(path: Path) -> None:
    overlay = yaml.safe_load(path.read_text()) or {}
    assert schema_errors(merged(VALUES, overlay)) == []


def test_every_value_is_in_the_schema() -> None:
    """additionalProperties: false everywhere values.yaml has a map of known keys."""

    def walk(node: dict[str, Any], path: str) -> None:
        props = node.get("properties")
        if props is None:
            return
        assert node.get("additionalProperties") is False, f"{path or '<root>'} allows unknown keys"
        for key, sub in props.items():
            walk(sub, f"{path}.{key}" if path else key)

    walk(SCHEMA, "")


def _lookup(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def value_references(text: str) -> set[str]:
    """Dotted value paths a template reads: .Values.a.b, $.Values.a.b, and $alias.b where $alias := .Values.a."""
    refs = set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text))
    aliases = dict(re.findall(r"\$(\w+)\s*:=\s*\.Values\.([A-Za-z0-9_.]+)", text))
    for alias, target in aliases.items():
        refs |= {f"{target}.{rest}" for rest in re.findall(rf"\${alias}\.([A-Za-z0-9_.]+)", text)}
    return {ref.rstrip(".") for ref in refs}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_reference_only_defined_values(path: Path) -> None:
    missing = sorted(ref for ref in value_references(path.read_text()) if not _lookup(VALUES, ref))
    assert missing == [], f"{path.name} reads values that values.yaml does not define"


def test_value_reference_scanner() -> None:
    text = "{{ .Values.a.b }} {{- $c := .Values.collector }} {{ $c.tls.enabled }} {{ $.Values.x }}"
    assert value_references(text) == {"a.b", "collector", "collector.tls.enabled", "x"}


def test_chart_ships_the_tested_rule_file_and_dashboards() -> None:
    rule_template = (CHART_DIR / "templates" / "prometheusrule.yaml").read_text()
    [rule_path] = re.findall(r'\.Files\.Get "([^"]+)"', rule_template)
    assert (CHART_DIR / rule_path).resolve() == RULES_FILE
    dash_template = (CHART_DIR / "templates" / "dashboards-configmaps.yaml").read_text()
    [pattern] = re.findall(r'\.Files\.Glob "([^"]+)"', dash_template)
    assert sorted(CHART_DIR.glob(pattern)) == dashboard_files()
    assert len(dashboard_files()) == 3
    assert "{{ $.Values.dashboards.label }}" in dash_template
    assert VALUES["dashboards"]["label"] == "grafana_dashboard"


def test_optional_monitoring_is_off_by_default() -> None:
    for key in ("serviceMonitor", "podMonitor", "prometheusRule", "dashboards"):
        assert VALUES[key]["enabled"] is False, key
    gates = {
        "servicemonitor.yaml": ".Values.serviceMonitor.enabled",
        "podmonitor.yaml": ".Values.podMonitor.enabled",
        "prometheusrule.yaml": ".Values.prometheusRule.enabled",
        "dashboards-configmaps.yaml": ".Values.dashboards.enabled",
    }
    for name, gate in gates.items():
        first_line = (CHART_DIR / "templates" / name).read_text().splitlines()[0]
        assert gate in first_line, f"{name} is not gated by {gate}"


def test_collector_daemonset_runs_with_only_the_capabilities_it_needs() -> None:
    text = (CHART_DIR / "templates" / "collector-daemonset.yaml").read_text()
    assert "kind: DaemonSet" in text
    assert "hostNetwork: true" in text
    assert "privileged: false" in text
    assert 'drop: ["ALL"]' in text
    added = re.findall(r"^\s+- ([A-Z_]+)$", text, re.MULTILINE)
    assert added == ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]
    # SYS_ADMIN and SYS_RESOURCE only behind their switches.
    assert re.search(r"if \$c\.namespaceRulesets }}\s*\n\s*# [^\n]*\n\s*- SYS_ADMIN", text)
    assert re.search(r"if \$c\.legacyMemlock }}\s*\n\s*# [^\n]*\n\s*- SYS_RESOURCE", text)
    for mount in ("/sys/kernel/tracing", "/sys/kernel/btf", "/lib/modules", "/usr/src", "/run/netns"):
        assert f"mountPath: {mount}" in text
    for host in ("tracefs", "btf", "modules", "headers", "netns"):
        assert f"path: {{{{ $c.hostPaths.{host} }}}}" in text
    assert "FELIX_PROMETHEUSREPORTERPORT" in text


def test_evaluator_takes_secrets_from_secrets() -> None:
    text = (CHART_DIR / "templates" / "evaluator-deployment.yaml").read_text()
    for env in ("POLICYWATCH_DATABASE_URL", "POLICYWATCH_WRITE_TOKENS", "POLICYWATCH_READ_TOKENS"):
        block = text.split(f"name: {env}", 1)[1].split("- name:", 1)[0]
        assert "secretKeyRef" in block, f"{env} must come from a Secret"
    assert "POLICYWATCH_OPENSEARCH_URL" in text
    assert "runAsNonRoot: true" in text
    service = (CHART_DIR / "templates" / "evaluator-service.yaml").read_text()
    assert "kind: Service" in service


def test_monitors_set_the_job_names_the_rules_use() -> None:
    rules = RULES_FILE.read_text()
    for name in ("servicemonitor.yaml", "podmonitor.yaml"):
        text = (CHART_DIR / "templates" / name).read_text()
        jobs = re.findall(r"replacement: (policywatch-[a-z-]+)", text)
        assert sorted(jobs) == ["policywatch-collector", "policywatch-collector-health", "policywatch-evaluator"]
        assert "path: /collector/metrics" in text
    assert 'job="policywatch-collector"' in rules and 'job="policywatch-evaluator"' in rules


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == CHART_DIR.name
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    notes = (CHART_DIR / "templates" / "NOTES.txt").read_text()
    assert "/metrics" in notes and "/collector/metrics" in notes


def test_dockerfile_builds_on_debian_12_with_bcc() -> None:
    text = (CHART_DIR.parent.parent / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:(12|bookworm)", text, re.MULTILINE)
    assert "python3-bpfcc" in text
    assert "--system-site-packages" in text
    assert re.search(r"^USER ", text, re.MULTILINE) is None or "10001" in text
    # Everything it copies exists, and it copies every package the distribution installs.
    repo = CHART_DIR.parent.parent
    copied = [src for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE) for src in line.split()[:-1]]
    assert copied and all((repo / src).exists() for src in copied), copied
    for package in ("collector", "evaluator", "api", "bpf", "migrations"):
        assert package in copied


def _key_lines(text: str) -> dict[str, int]:
    """Dotted path of every mapping key in a block-style YAML file -> its line index."""
    paths: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines()):
        match = re.match(r"^( *)([A-Za-z0-9_.\-/]+):(?:\s|$)", line)
        if not match:
            continue
        indent, key = len(match[1]), match[2]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        paths[".".join(k for _, k in stack)] = number
    return paths


def test_every_value_is_commented() -> None:
    """Each value the schema describes as a leaf has a '# --' comment line right above it in values.yaml."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    where = _key_lines("\n".join(lines))
    uncommented = []

    def commented(number: int) -> bool:
        return number > 0 and lines[number - 1].strip().startswith("#")

    def walk(node: dict[str, Any], path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            dotted = f"{path}.{key}" if path else key
            number = where.get(dotted)
            if number is None:
                assert key not in node.get("required", []), f"{dotted} is required but not in values.yaml"
                continue
            if "properties" in sub and not commented(number):
                walk(sub, dotted)  # a section: its values carry the comments
            elif not commented(number):
                uncommented.append(dotted)

    walk(SCHEMA, "")
    assert uncommented == []
