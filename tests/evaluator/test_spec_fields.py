"""Calico's current GlobalAlert fields: summary, type and substitutions, validated and compiled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.dialects import postgresql

from evaluator.alerts import FieldError, GlobalAlertSpec, SpecInvalid, validate_spec
from evaluator.query import SetSelector, compile_query, parse, to_dsl, to_sql
from evaluator.query.substitute import expand

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "calico" / "globalalert-sample.yaml"

BASE: dict[str, Any] = {
    "description": "Denied flows from ${source_namespace}",
    "severity": 50,
    "dataSet": "flows",
    "query": "action = deny AND source_namespace IN ${namespaces}",
    "substitutions": [{"name": "namespaces", "values": ["dev", "test-*"]}],
    "aggregateBy": ["source_namespace"],
}


def errors_of(raw: Any, *, template: bool = False) -> list[FieldError]:
    with pytest.raises(SpecInvalid) as info:
        validate_spec(raw, template=template)
    return info.value.errors


def test_calicos_documented_sample_is_accepted() -> None:
    sample = yaml.safe_load(SAMPLE.read_text())
    spec, warnings = validate_spec(sample["spec"], template=False)
    assert spec.summary == "Sample" and spec.metric == "sum" and warnings == []
    assert spec.to_dict()["summary"] == "Sample"
    assert GlobalAlertSpec.from_dict(spec.to_dict()) == spec


def test_summary_is_a_template_checked_like_the_description() -> None:
    spec, _ = validate_spec({**BASE, "summary": "${source_namespace} denied"}, template=False)
    assert spec.summary == "${source_namespace} denied"
    [error] = errors_of({**BASE, "summary": "${dest_namespace} denied"})
    assert error.path == "spec.summary" and "use one of ${source_namespace}" in error.reason
    [error] = errors_of({**BASE, "summary": 5})
    assert (error.path, error.reason) == ("spec.summary", "must be a string")
    [error] = errors_of({**BASE, "summary": "for <namespace>"})
    assert "placeholder(s) <namespace>" in error.reason
    assert validate_spec({**BASE, "summary": "for <namespace>"}, template=True)[0].summary == "for <namespace>"
    assert "summary" not in validate_spec(BASE, template=False)[0].to_dict()


def test_type_rule_based_is_kept_and_others_refused() -> None:
    spec, _ = validate_spec({**BASE, "type": "RuleBased"}, template=False)
    assert spec.to_dict()["type"] == "RuleBased"
    assert GlobalAlertSpec.from_dict(spec.to_dict()).type == "RuleBased"
    [error] = errors_of({**BASE, "type": "AnomalyDetection"})
    assert error.path == "spec.type" and error.value == "AnomalyDetection"
    assert "unknown alert type 'AnomalyDetection'; valid: RuleBased" in error.reason
    assert "only rule-based alerts" in error.reason
    [error] = errors_of({**BASE, "type": "rulebased"})
    assert "did you mean 'RuleBased'?" in error.reason


def test_substitutions_are_kept_in_their_documented_shape() -> None:
    spec, _ = validate_spec(BASE, template=False)
    assert spec.substitution_map() == {"namespaces": ("dev", "test-*")}
    assert spec.to_dict()["substitutions"] == [{"name": "namespaces", "values": ["dev", "test-*"]}]
    assert spec.expanded_query() == 'action = deny AND source_namespace IN {"dev", "test-*"}'
    assert GlobalAlertSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"query": "source_namespace IN ${others}"}, "spec.query", "${others} is not a substitution of this alert"),
        ({"substitutions": []}, "spec.query", "(defined: none)"),
        ({"substitutions": [{"name": "namespaces", "values": []}]}, "spec.substitutions[0].values", "non-empty"),
        ({"substitutions": [{"name": "namespaces"}]}, "spec.substitutions[0].values", "required"),
        ({"substitutions": [{"name": "namespaces", "values": ["a", 3]}]}, "spec.substitutions[0].values[1]", "string"),
        ({"substitutions": [{"name": "bad name", "values": ["a"]}]}, "spec.substitutions[0].name", "letters"),
        (
            {"substitutions": [{"name": "namespaces", "values": ["a"]}, {"name": "namespaces", "values": ["b"]}]},
            "spec.substitutions[1].name",
            "duplicate substitution 'namespaces'",
        ),
        ({"substitutions": [{"name": "namespaces", "values": ["a"], "x": 1}]}, "spec.substitutions[0].x", "unknown"),
        ({"substitutions": {"namespaces": ["a"]}}, "spec.substitutions", "must be a list of {name, values}"),
        ({"substitutions": ["namespaces"]}, "spec.substitutions[0]", "an object with name and values"),
    ],
)
def test_bad_substitutions_are_refused(changes: dict[str, Any], path: str, fragment: str) -> None:
    errors = errors_of({**BASE, **changes})
    matching = [e for e in errors if e.path == path]
    assert matching, errors
    assert any(fragment in e.reason for e in matching), [e.reason for e in matching]


def test_substituted_values_are_checked_against_the_key() -> None:
    errors = errors_of(
        {**BASE, "query": "dest_port IN ${ports}", "substitutions": [{"name": "ports", "values": ["x"]}]}
    )
    assert [e.path for e in errors] == ["spec.query"]


def test_substitutions_compile_into_the_dsl_and_sql() -> None:
    spec, _ = validate_spec(BASE, template=False)
    expr = compile_query(spec.expanded_query(), "flows")
    dsl = to_dsl(expr, "flows")
    text = str(dsl)
    assert "'dev'" in text and "test-*" in text
    sql = str(to_sql(expr, "flows").compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "'dev'" in sql and "test-%" in sql


def test_every_error_is_reported_together() -> None:
    raw = {**BASE, "type": "Other", "severity": 0, "summary": "${nope}", "substitutions": [{"name": "x", "values": []}]}
    paths = [e.path for e in errors_of(raw)]
    assert paths == ["spec.type", "spec.summary", "spec.severity", "spec.substitutions[0].values"]


@pytest.mark.parametrize("values", [["plain"], ['q"uote', "back\\slash", "it's"], ["web-*", "a?c", "x y"]])
def test_expansion_quotes_every_value_so_it_parses_back(values: list[str]) -> None:
    expr = parse(expand("k IN ${s}", {"s": values}))
    assert isinstance(expr, SetSelector)
    assert [m.value for m in expr.members] == values
