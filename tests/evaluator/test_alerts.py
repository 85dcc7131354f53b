"""Validation of GlobalAlert / GlobalAlertTemplate specs: each rule refused and accepted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.alerts import (
    AlertStatus,
    ErrorCondition,
    FieldError,
    GlobalAlertSpec,
    SpecInvalid,
    validate_name,
    validate_spec,
)

BASE: dict[str, Any] = {
    "description": "Denied flows from ${source_namespace}: ${sum}",
    "severity": 50,
    "dataSet": "flows",
    "period": "5m",
    "lookback": "15m",
    "query": "action = deny AND dest_port = 22",
    "aggregateBy": ["source_namespace", "source_name_aggr"],
    "field": "num_flows",
    "metric": "sum",
    "condition": "gt",
    "threshold": 0,
}


def spec(**changes: Any) -> dict[str, Any]:
    out = {**BASE, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def errors_of(raw: Any, *, template: bool = False) -> list[FieldError]:
    with pytest.raises(SpecInvalid) as info:
        validate_spec(raw, template=template)
    return info.value.errors


def assert_error(raw: Any, path: str, fragment: str, *, template: bool = False) -> None:
    errors = errors_of(raw, template=template)
    matching = [e for e in errors if e.path == path]
    assert matching, f"no error at {path}; got {errors}"
    assert any(fragment in e.reason for e in matching), f"{fragment!r} not in {[e.reason for e in matching]}"


def test_valid_spec_is_normalised() -> None:
    result, warnings = validate_spec(spec(), template=False)
    assert result == GlobalAlertSpec(
        description=BASE["description"],
        severity=50,
        dataSet="flows",
        period=timedelta(minutes=5),
        lookback=timedelta(minutes=15),
        query=BASE["query"],
        aggregateBy=("source_namespace", "source_name_aggr"),
        field="num_flows",
        metric="sum",
        condition="gt",
        threshold=0.0,
    )
    assert warnings == []
    assert result.to_dict()["period"] == "5m0s"
    assert GlobalAlertSpec.from_dict(result.to_dict()) == result


def test_defaults_period_and_lookback() -> None:
    result, _ = validate_spec({"description": "d", "severity": 1, "dataSet": "dns"}, template=False)
    assert (result.period, result.lookback) == (timedelta(minutes=5), timedelta(minutes=10))
    assert result.query == "" and result.aggregateBy == () and result.metric is None


def test_not_an_object() -> None:
    assert_error(["a"], "spec", "required")
    assert_error(None, "spec", "required")


def test_unknown_field_suggests_the_right_one() -> None:
    assert_error(spec(aggregateby=["x"]), "spec.aggregateby", "did you mean 'aggregateBy'")


@pytest.mark.parametrize("value", [None, ""])
def test_description_required(value: Any) -> None:
    assert_error(spec(description=value), "spec.description", "required")


def test_description_must_be_text() -> None:
    assert_error(spec(description=5), "spec.description", "string")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "required"),
        (0, "from 1 to 100"),
        (101, "from 1 to 100"),
        ("50", "integer"),
        (True, "integer"),
        (2.5, "whole"),
    ],
)
def test_severity(value: Any, fragment: str) -> None:
    assert_error(spec(severity=value), "spec.severity", fragment)


@pytest.mark.parametrize("value", [1, 100, 50.0])
def test_severity_accepted(value: Any) -> None:
    assert validate_spec(spec(severity=value), template=False)[0].severity == int(value)


@pytest.mark.parametrize(
    ("value", "fragment"), [(None, "required"), ("Flows", "did you mean 'flows'"), ("logs", "valid")]
)
def test_data_set(value: Any, fragment: str) -> None:
    assert_error(spec(dataSet=value), "spec.dataSet", fragment)


@pytest.mark.parametrize("dataset", ["audit", "dns", "flows"])
def test_data_set_accepted(dataset: str) -> None:
    raw = {"description": "x", "severity": 5, "dataSet": dataset}
    assert validate_spec(raw, template=False)[0].dataSet == dataset


@pytest.mark.parametrize("key", ["period", "lookback"])
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("-5m", "negative"),
        ("30s", "at least 1m"),
        ("0", "at least 1m"),
        ("5", "missing unit"),
        ("5 m", "spaces"),
        ("5d", "units are"),
        (300, "Go duration"),
        ("", None),
    ],
)
def test_durations_refused(key: str, value: Any, fragment: str | None) -> None:
    if fragment is None:  # empty string means "default", as in Go's zero value
        validate_spec(spec(**{key: value, "lookback": "20m" if key == "period" else value}), template=False)
        return
    assert_error(spec(**{key: value}), f"spec.{key}", fragment)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h2m3s", timedelta(hours=1, minutes=2, seconds=3)),
        ("1.5h", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("60000ms", timedelta(minutes=1)),
    ],
)
def test_durations_accepted(text: str, expected: timedelta) -> None:
    result, _ = validate_spec(spec(period=text, lookback="3h"), template=False)
    assert result.period == expected


def test_query_checked_against_the_data_set() -> None:
    assert_error(spec(query="rtype = A"), "spec.query", "unknown key 'rtype'")
    assert_error(spec(query="action = "), "spec.query", "position")
    assert_error(spec(query=42), "spec.query", "string")


def test_query_accepts_calico_syntax() -> None:
    query = "action=deny and not (source_namespace IN {'kube-*', default} or dest_port >= 1024)"
    assert validate_spec(spec(query=query), template=False)[0].query == query


def test_aggregate_by() -> None:
    assert_error(spec(aggregateBy="source_ip"), "spec.aggregateBy", "list of keys, e.g. [source_ip]")
    assert_error(spec(aggregateBy=["source_ip", "client_name"]), "spec.aggregateBy[1]", "client_name")
    assert_error(spec(aggregateBy=["source_ip", "source_ip"]), "spec.aggregateBy[1]", "duplicate")
    assert_error(spec(aggregateBy=[3]), "spec.aggregateBy[0]", "key name")
    ok, _ = validate_spec(spec(aggregateBy=["dest_ip"], description="to ${dest_ip}"), template=False)
    assert ok.aggregateBy == ("dest_ip",)


@pytest.mark.parametrize(("value", "fragment"), [("median", "valid: avg"), ("SUM", "did you mean 'sum'")])
def test_metric(value: str, fragment: str) -> None:
    assert_error(spec(metric=value), "spec.metric", fragment)


@pytest.mark.parametrize("metric", ["avg", "max", "min", "sum"])
def test_field_metrics_need_a_numeric_field(metric: str) -> None:
    description = f"${{{metric}}} from ${{source_namespace}}"
    assert_error(
        spec(metric=metric, field=..., description=description), "spec.field", f"required with metric {metric}"
    )
    assert_error(spec(metric=metric, field="action", description=description), "spec.field", "not numeric")
    assert_error(spec(metric=metric, field="bytez", description=description), "spec.field", "unknown key")
    assert validate_spec(spec(metric=metric, field="bytes_in", description=description), template=False)


def test_count_takes_no_field() -> None:
    assert_error(spec(metric="count", description="${count}"), "spec.field", "takes no field")
    assert validate_spec(spec(metric="count", field=..., description="${count}"), template=False)


def test_field_without_metric() -> None:
    assert_error(spec(metric=..., condition=..., threshold=..., description="x"), "spec.metric", "required with field")


def test_metric_without_condition() -> None:
    assert_error(spec(condition=..., threshold=...), "spec.condition", "required with metric")


def test_condition_without_threshold_and_threshold_without_condition() -> None:
    assert_error(spec(threshold=...), "spec.threshold", "required with condition")
    assert_error(
        spec(metric=..., field=..., condition=..., description="x"), "spec.condition", "required with threshold"
    )
    assert_error(spec(metric=..., field=..., threshold=..., description="x"), "spec.metric", "required with condition")


@pytest.mark.parametrize("condition", ["eq", "not_eq", "lt", "lte", "gt", "gte"])
def test_conditions_accepted(condition: str) -> None:
    assert validate_spec(spec(condition=condition), template=False)[0].condition == condition


def test_condition_refused() -> None:
    assert_error(spec(condition="ne"), "spec.condition", "valid: eq")


@pytest.mark.parametrize("value", ["10", True, float("inf"), [1]])
def test_threshold_must_be_a_number(value: Any) -> None:
    assert_error(spec(threshold=value), "spec.threshold", "finite number")


def test_threshold_accepts_floats() -> None:
    assert validate_spec(spec(threshold=0.5), template=False)[0].threshold == 0.5


def test_description_variables_must_be_aggregate_keys_or_the_metric() -> None:
    assert_error(spec(description="${dest_ip} got ${sum}"), "spec.description", "${dest_ip}")
    assert_error(spec(description="${avg}"), "spec.description", "use one of ${source_namespace}")
    unconditional = {"description": "hit ${x}", "severity": 5, "dataSet": "flows"}
    assert_error(unconditional, "spec.description", "no aggregateBy keys or metric")


def test_every_error_reported_at_once() -> None:
    raw = {"description": "", "severity": 0, "dataSet": "flows", "period": "1s", "query": "nope", "metric": "x"}
    paths = {e.path for e in errors_of(raw)}
    assert {"spec.description", "spec.severity", "spec.period", "spec.query", "spec.metric"} <= paths


def test_lookback_warning() -> None:
    _, warnings = validate_spec(spec(lookback="9m59s"), template=False)
    assert [w.path for w in warnings] == ["spec.lookback"]
    assert "flowLogsFlushInterval" in warnings[0].message and "at least 10m0s" in warnings[0].message
    # period + flush interval exactly: every record flushed late is still read by the next run
    _, warnings = validate_spec(spec(lookback="10m"), template=False)
    assert warnings == []
    _, warnings = validate_spec(spec(lookback="4m"), template=False, flush_intervals={"flows": timedelta(0)})
    assert [w.path for w in warnings] == ["spec.lookback"]
    _, warnings = validate_spec(spec(lookback="5m"), template=False, flush_intervals={"flows": timedelta(0)})
    assert warnings == []


def test_default_period_and_lookback_raise_no_warning() -> None:
    for dataset in ("flows", "dns", "audit"):
        _, warnings = validate_spec({"description": "d", "severity": 1, "dataSet": dataset}, template=False)
        assert warnings == [], dataset


def test_placeholders_only_in_templates() -> None:
    raw = spec(query='dest_namespace="<desired namespace>" AND dest_port=<port>', description="to <ns> ${sum}")
    assert_error(raw, "spec.query", "placeholder")
    assert_error(raw, "spec.description", "placeholder")
    result, _ = validate_spec(raw, template=True)
    assert result.query == raw["query"]
    # The rest of a template's query is still checked.
    assert_error(spec(query='dest_namespace="<ns>" AND source_ip="1.2.3"'), "spec.query", "1.2.3", template=True)
    assert_error(spec(query='dest_namespaze="<ns>"'), "spec.query", "dest_namespaze", template=True)


def test_template_query_limits_and_positions_are_the_users() -> None:
    # 900 bare placeholders: 1,800 quotes are added before parsing, which must not count against the limit.
    selector = "dest_port=<" + "the port that the database of your team listens on, say 5432"[:55] + ">"
    near_limit = " OR ".join([selector] * 900)
    assert len(near_limit) <= 65_536 < len(near_limit) + 1_800
    result, _ = validate_spec(spec(query=near_limit), template=True)
    assert result.query == near_limit
    too_long = near_limit + f" OR {selector}" * 30
    assert_error(spec(query=too_long), "spec.query", f"query is {len(too_long)} characters long", template=True)
    # A syntax error after a placeholder is reported where the user wrote it.
    bad = "dest_port=<port> AND AND dest_port=1"
    (error,) = [e for e in errors_of(spec(query=bad), template=True) if e.path == "spec.query"]
    assert f"position {bad.index('AND AND') + 4}" in error.reason, error.reason


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("policy.pod", True),
        ("my-alert-1", True),
        ("x" * 253, True),
        ("x" * 254, False),
        ("My", False),
        ("-a", False),
        ("a-", False),
        ("a_b", False),
        ("a..b", False),
        ("", False),
        (None, False),
    ],
)
def test_names(name: Any, ok: bool) -> None:
    assert (validate_name(name) == []) is ok


def test_status_dict_and_error_conditions() -> None:
    status = AlertStatus(active=True, healthy=False, errorConditions=(ErrorCondition("QueryError", "boom"),))
    data = status.to_dict()
    assert data["errorConditions"] == [{"type": "QueryError", "message": "boom"}]
    assert "lastExecuted" not in data and data["active"] is True


FLOW_KEYS = ["source_namespace", "source_name_aggr", "dest_namespace", "dest_port", "proto", "action", "source_ip"]
NUMERIC = ["num_flows", "bytes_in", "bytes_out", "packets_in", "dest_port"]


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    aggregate = draw(st.lists(st.sampled_from(FLOW_KEYS), unique=True, max_size=3))
    metric = draw(st.sampled_from([None, "count", "sum", "avg", "min", "max"]))
    variables = [*aggregate, *([metric] if metric else [])]
    words = draw(st.lists(st.sampled_from(variables), max_size=3)) if variables else []
    raw: dict[str, Any] = {
        "description": "alert " + " ".join(f"${{{w}}}" for w in words),
        "severity": draw(st.integers(1, 100)),
        "dataSet": "flows",
        "period": f"{draw(st.integers(1, 120))}m",
        "lookback": f"{draw(st.integers(1, 600))}m{draw(st.integers(0, 59))}s",
        "query": draw(st.sampled_from(["", "action = deny", "dest_port >= 1024 AND proto IN {tcp, udp}"])),
        "aggregateBy": aggregate,
    }
    if draw(st.booleans()):  # Calico's newer fields
        raw["type"] = "RuleBased"
        raw["summary"] = "short " + " ".join(f"${{{w}}}" for w in words)
        names = draw(st.lists(st.sampled_from(["a", "ns", "ports_1"]), unique=True, min_size=1, max_size=2))
        raw["substitutions"] = [
            {"name": n, "values": draw(st.lists(st.sampled_from(["dev", "x-*", "a?c"]), min_size=1))} for n in names
        ]
        raw["query"] = " AND ".join(f"source_namespace IN ${{{n}}}" for n in names)
    if metric:
        raw["metric"] = metric
        raw["condition"] = draw(st.sampled_from(["eq", "not_eq", "lt", "lte", "gt", "gte"]))
        raw["threshold"] = draw(st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False)))
        if metric != "count":
            raw["field"] = draw(st.sampled_from(NUMERIC))
    return raw


@settings(max_examples=60, deadline=None)
@given(valid_specs())
def test_normalised_specs_validate_to_themselves(raw: dict[str, Any]) -> None:
    result, _ = validate_spec(raw, template=False)
    shown = result.to_dict()
    again, _ = validate_spec(shown, template=False)
    assert again == result
    assert GlobalAlertSpec.from_dict(shown) == result
    assert validate_spec(shown, template=True)[0] == result  # every alert is a valid template too
