"""The rules of a GlobalAlert spec, one ``check_<field>`` per field, run by ``evaluator.spec``'s validators.

Each check takes the raw value, the validation info (``info.data``: the earlier fields that were valid;
``info.context``: the query catalog, when the user rules apply) and whether the spec is a template's, and
returns the value to store or raises ``Problems`` (``refuse``) with the reasons a user reads.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationInfo
from pydantic_core import PydanticCustomError

from evaluator.durations import DurationError, format_go_duration, parse_go_duration
from evaluator.query import substitute
from evaluator.vocabulary import ALERT_TYPES, CONDITIONS, DATASETS, FIELD_METRICS, METRICS

DEFAULT_PERIOD = timedelta(minutes=5)
DEFAULT_LOOKBACK = timedelta(minutes=10)
MIN_PERIOD = timedelta(minutes=1)
PROBLEMS = "policywatch_problems"
# A "<desired namespace>" style blank to fill in: allowed in templates only.
PLACEHOLDER = re.compile(r"<[^<>=\s][^<>=]*>")
_VARIABLE = substitute.VARIABLE
_SUBSTITUTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Problem = tuple[str, Any, str]  # (sub-path such as "[1]" or ".name", value, reason)


def refuse(value: Any, reason: str, *more: Problem) -> NoReturn:
    """Fail the field being validated with ``reason`` (and more problems at sub-paths of it)."""
    problems = [("", value, reason), *more] if reason else list(more)
    raise PydanticCustomError(PROBLEMS, "{summary}", {"summary": problems[0][2], "problems": problems})


def refuse_all(problems: list[Problem]) -> None:
    if problems:
        raise PydanticCustomError(PROBLEMS, "{summary}", {"summary": problems[0][2], "problems": problems})


def check_type(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None or value == "":
        return None
    if value not in ALERT_TYPES:
        refuse(
            value,
            unknown_reason(str(value), ALERT_TYPES, "alert type")
            + "; only rule-based alerts (a query over logs) are supported",
        )
    return value


def check_dataset(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None or value == "":
        refuse(value, "required: one of audit, dns, flows")
    if value not in DATASETS:
        refuse(value, unknown_reason(str(value), DATASETS, "data set"))
    return value


def check_severity(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None:
        refuse(value, "required: an integer from 1 to 100")
    if isinstance(value, bool) or not isinstance(value, int | float):
        refuse(value, "must be an integer from 1 to 100")
    if isinstance(value, float) and not value.is_integer():
        refuse(value, "must be a whole number from 1 to 100")
    if not 1 <= value <= 100:
        refuse(value, "must be from 1 to 100")
    return int(value)


def check_duration(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None or value == "":
        return DEFAULT_PERIOD if info.field_name == "period" else DEFAULT_LOOKBACK
    if isinstance(value, timedelta):
        parsed = value
    elif not isinstance(value, str):
        refuse(value, 'must be a Go duration string with units, e.g. "5m", "1h30m", "90s"')
    else:
        try:
            parsed = parse_go_duration(value)
        except DurationError as exc:
            refuse(value, str(exc))
    if parsed < timedelta(0):
        refuse(value, "must not be negative")
    # The 1m floor is a rule for users; a spec built in code (tests, benchmarks) may run faster.
    if parsed < MIN_PERIOD and _catalog(info) is not None:
        refuse(value, f"must be at least 1m (got {format_go_duration(parsed)})")
    return parsed


def check_aggregate_by(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        refuse(value, f"must be a list of keys, e.g. [{value}]")
    if not isinstance(value, list | tuple):
        refuse(value, "must be a list of keys, e.g. [source_namespace, source_name_aggr]")
    problems: list[Problem] = []
    seen: list[str] = []
    for i, key in enumerate(value):
        where = f"[{i}]"
        if not isinstance(key, str) or not key:
            problems.append((where, key, "must be a key name (string)"))
        elif key in seen:
            problems.append((where, key, f"duplicate key {key!r}"))
        else:
            reason = _key_problem(template, info, key)
            if reason:
                problems.append((where, key, reason))
            else:
                seen.append(key)
    refuse_all(problems)
    return tuple(value)


def check_choice(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None or value == "":
        return None
    allowed = METRICS if info.field_name == "metric" else CONDITIONS
    if value not in allowed:
        refuse(value, unknown_reason(str(value), allowed, str(info.field_name)))
    return value


def check_field(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        refuse(value, "must be the name of a numeric key")
    reason = _key_problem(template, info, value)
    if reason:
        refuse(value, reason)
    metric = info.data.get("metric")
    catalog = _catalog(info)
    dataset = info.data.get("dataSet")
    if catalog is not None and dataset is not None and metric in FIELD_METRICS:
        if not (template and PLACEHOLDER.fullmatch(value)):
            if not catalog.key(str(dataset), value).numeric:
                refuse(value, f"metric {metric} needs a numeric field; {value!r} is not numeric in {dataset}")
    return value


def check_threshold(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        refuse(value, "must be a finite number, e.g. 100 or 0.5")
    return float(value)


def check_substitutions(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        refuse(value, "must be a list of {name, values}, e.g. [{name: namespaces, values: [dev, test]}]")
    problems: list[Problem] = []
    seen: set[str] = set()
    out: list[Any] = []
    for i, item in enumerate(value):
        if isinstance(item, BaseModel):  # a Substitution built in code
            item = item.model_dump()
        if not isinstance(item, Mapping):
            problems.append((f"[{i}]", item, "must be an object with name and values"))
            continue
        for key in item:
            if key not in ("name", "values"):
                problems.append((f"[{i}].{key}", item[key], "unknown field; valid: name, values"))
        name, values = item.get("name"), item.get("values")
        if not isinstance(name, str) or not _SUBSTITUTION_NAME.fullmatch(name):
            problems.append(
                (f"[{i}].name", name, "required: a name of letters, digits and '_' used as ${name} in the query")
            )
        elif name in seen:
            problems.append((f"[{i}].name", name, f"duplicate substitution {name!r}"))
        else:
            seen.add(name)
        if not isinstance(values, list | tuple) or not values:
            problems.append((f"[{i}].values", values, "required: a non-empty list of values"))
        else:
            for j, member in enumerate(values):
                if not isinstance(member, str) or not member:
                    problems.append((f"[{i}].values[{j}]", member, "must be a non-empty string"))
        out.append(item)
    refuse_all(problems)
    return out


def check_query(value: Any, info: ValidationInfo, template: bool) -> Any:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        refuse(value, 'must be a string, e.g. "action = deny AND dest_port = 22"')
    catalog = _catalog(info)
    dataset = info.data.get("dataSet")
    if catalog is None or dataset is None or "substitutions" not in info.data:
        return value
    placeholders = [m.group(0) for m in PLACEHOLDER.finditer(value)]
    if placeholders and not template:
        refuse(value, _placeholder_reason(placeholders))
    substitutions = {s.name: s.values for s in info.data["substitutions"]}
    try:
        expanded = substitute.expand(value, substitutions)
        if placeholders:
            catalog.check_template(expanded, str(dataset))
        else:
            catalog.compile(expanded, str(dataset))
    except ValueError as exc:
        refuse(value, _query_reason(exc))
    return value


def check_text(value: Any, info: ValidationInfo, template: bool) -> Any:
    key = str(info.field_name)
    if value is None or value == "":
        if key == "summary":
            return None
        refuse(value, "required: the text of generated events, e.g. 'Denied flows from ${source_namespace}'")
    if not isinstance(value, str):
        refuse(value, "must be a string")
    if _catalog(info) is None:
        return value
    problems: list[Problem] = []
    placeholders = [m.group(0) for m in PLACEHOLDER.finditer(value)]
    if placeholders and not template:
        problems.append(("", value, _placeholder_reason(placeholders)))
    problems.extend(("", value, reason) for reason in _variable_problems(template, info, value))
    refuse_all(problems)
    return value


def combination_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """The rules between metric, field, condition and threshold, as (path, value, reason)."""
    metric = _blank_none(raw.get("metric"))
    field = _blank_none(raw.get("field"))
    condition = _blank_none(raw.get("condition"))
    threshold = raw.get("threshold")
    out: list[Problem] = []
    if metric == "count" and field is not None:
        out.append(("field", field, "metric count counts records and takes no field; remove field"))
    if metric in FIELD_METRICS and field is None:
        out.append(("field", None, f"required with metric {metric}: the numeric key to aggregate"))
    if field is not None and metric is None:
        out.append(("metric", None, f"required with field {field!r}: one of avg, max, min, sum"))
    if metric is not None and condition is None:
        out.append(("condition", None, f"required with metric {metric}: one of {', '.join(CONDITIONS)}"))
    if condition is not None and metric is None:
        out.append(("metric", None, f"required with condition {condition}: one of {', '.join(METRICS)}"))
    if condition is not None and threshold is None:
        out.append(("threshold", None, f"required with condition {condition}: the number to compare with"))
    if threshold is not None and condition is None:
        out.append(("condition", None, f"required with threshold {threshold}: one of {', '.join(CONDITIONS)}"))
    return out


def _catalog(info: ValidationInfo) -> Any:
    return info.context.get("catalog") if isinstance(info.context, dict) else None


def _key_problem(template: bool, info: ValidationInfo, key: str) -> str | None:
    """Why ``key`` is not a key of the data set (None if it is, or cannot be checked)."""
    catalog = _catalog(info)
    dataset = info.data.get("dataSet")
    if catalog is None or dataset is None or (template and PLACEHOLDER.fullmatch(key)):
        return None
    try:
        catalog.key(str(dataset), key)
    except ValueError as exc:
        return _query_reason(exc)
    return None


def _variable_problems(template: bool, info: ValidationInfo, text: str) -> list[str]:
    if "aggregateBy" not in info.data:
        return []  # aggregateBy itself is wrong and reported; do not pile on
    allowed = [str(k) for k in info.data["aggregateBy"]]
    metric = info.data.get("metric")
    if metric is not None:
        allowed.append(str(metric))
    out: list[str] = []
    for match in _VARIABLE.finditer(text):
        name = match.group(1)
        if name in allowed or (template and PLACEHOLDER.fullmatch(name)):
            continue
        if allowed:
            hint = f"use one of {', '.join('${' + a + '}' for a in allowed)}"
        else:
            hint = "this alert has no aggregateBy keys or metric to substitute"
        out.append(f"${{{name}}} is neither an aggregateBy key nor the metric; {hint}")
    return out


def _blank_none(value: Any) -> Any:
    return None if value == "" else value


def _placeholder_reason(placeholders: list[str]) -> str:
    listed = ", ".join(placeholders)
    return f"contains the template placeholder(s) {listed}; replace them with real values"


def _query_reason(exc: ValueError) -> str:
    reason = str(exc)
    suggestion = getattr(exc, "suggestion", None)
    if suggestion and str(suggestion) not in reason:
        reason = f"{reason} (did you mean {suggestion!r}?)"
    return reason


def unknown_reason(value: str, allowed: tuple[str, ...], what: str) -> str:
    """'unknown <what> <value>; valid: ...', with the closest valid name as a suggestion."""
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    lowered = [a for a in allowed if a.lower() == value.lower()]
    hint = lowered or close
    text = f"unknown {what} {value!r}; valid: {', '.join(allowed)}"
    if hint:
        text += f" (did you mean {hint[0]!r}?)"
    return text
