"""GlobalAlert / GlobalAlertTemplate specs: the immutable spec, its validation, and the alert status.

Pure data and rules; no web framework. ``validate_spec`` collects every problem of a raw ``spec`` mapping
(as decoded from JSON or YAML) into one ``SpecInvalid`` so a user sees them all at once, each with the
field path, the offending value and what would be right. A lookback too short to cover the period plus
the log flush interval is accepted, with a ``SpecWarning``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from evaluator import query
from evaluator.durations import DurationError, format_go_duration, parse_go_duration
from evaluator.query import schema
from evaluator.query.ast import walk

DATASETS = ("audit", "dns", "flows")
METRICS = ("avg", "max", "min", "sum", "count")
FIELD_METRICS = ("avg", "max", "min", "sum")
CONDITIONS = ("eq", "not_eq", "lt", "lte", "gt", "gte")
SPEC_KEYS = (
    "description",
    "severity",
    "dataSet",
    "period",
    "lookback",
    "query",
    "aggregateBy",
    "field",
    "metric",
    "condition",
    "threshold",
)
DEFAULT_PERIOD = timedelta(minutes=5)
DEFAULT_LOOKBACK = timedelta(minutes=10)
MIN_PERIOD = timedelta(minutes=1)
# Felix's flowLogsFlushInterval and dnsLogsFlushInterval default to 300 s; audit logs reach the store
# through a log shipper that flushes within seconds.
DEFAULT_FLUSH_INTERVALS: Mapping[str, timedelta] = {
    "flows": timedelta(minutes=5),
    "dns": timedelta(minutes=5),
    "audit": timedelta(seconds=30),
}
FLUSH_SETTING = {"flows": "flowLogsFlushInterval", "dns": "dnsLogsFlushInterval", "audit": "audit log flush"}
MAX_ERROR_CONDITIONS = 10
NAME_MAX = 253
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
# A "<desired namespace>" style blank to fill in: allowed in templates only.
PLACEHOLDER = re.compile(r"<[^<>=\s][^<>=]*>")


@dataclass(frozen=True)
class FieldError:
    """One problem: where (``spec.severity``, ``spec.aggregateBy[1]``), the value found, and why."""

    path: str
    value: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "value": self.value, "reason": self.reason}


@dataclass(frozen=True)
class SpecWarning:
    """Accepted but probably not what the user wants."""

    path: str
    value: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "value": self.value, "message": self.message}


# The interface contract calls the warning type ``Warning``; that name is kept as an alias, while code here
# uses ``SpecWarning`` so that importers need not shadow Python's builtin ``Warning``.
Warning = SpecWarning


class SpecInvalid(ValueError):
    """Raised with every ``FieldError`` found, never just the first."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        lines = "; ".join(f"{e.path}: {e.reason}" for e in self.errors)
        super().__init__(f"{len(self.errors)} invalid field(s): {lines}")


@dataclass(frozen=True)
class GlobalAlertSpec:
    """A validated spec. Field names follow the resource's JSON (camelCase) on purpose."""

    description: str
    severity: int
    dataSet: str
    period: timedelta = DEFAULT_PERIOD
    lookback: timedelta = DEFAULT_LOOKBACK
    query: str = ""
    aggregateBy: tuple[str, ...] = ()
    field: str | None = None
    metric: str | None = None
    condition: str | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as the API shows it: durations as Go strings, unset optional fields omitted."""
        out: dict[str, Any] = {
            "description": self.description,
            "severity": self.severity,
            "dataSet": self.dataSet,
            "period": format_go_duration(self.period),
            "lookback": format_go_duration(self.lookback),
        }
        if self.query:
            out["query"] = self.query
        if self.aggregateBy:
            out["aggregateBy"] = list(self.aggregateBy)
        for key in ("field", "metric", "condition"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.threshold is not None:
            # Go's encoding/json writes a float64 100 as 100: keep whole numbers integral.
            out["threshold"] = int(self.threshold) if self.threshold.is_integer() else self.threshold
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlobalAlertSpec:
        """Rebuild a spec that was validated before (e.g. read back from the database); no checks."""
        threshold = data.get("threshold")
        return cls(
            description=str(data["description"]),
            severity=int(data["severity"]),
            dataSet=str(data["dataSet"]),
            period=parse_go_duration(data.get("period") or "5m"),
            lookback=parse_go_duration(data.get("lookback") or "10m"),
            query=str(data.get("query") or ""),
            aggregateBy=tuple(data.get("aggregateBy") or ()),
            field=data.get("field") or None,
            metric=data.get("metric") or None,
            condition=data.get("condition") or None,
            threshold=None if threshold is None else float(threshold),
        )


@dataclass(frozen=True)
class ErrorCondition:
    """One entry of ``status.errorConditions`` (Calico: ``{type, message}``)."""

    type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True)
class AlertStatus:
    """Server-owned status of a GlobalAlert, written only by the scheduler.

    Names follow the resource's JSON. ``errorConditions`` keeps the newest ``MAX_ERROR_CONDITIONS``
    (the repository trims older ones), newest last.
    """

    lastUpdate: datetime | None = None
    active: bool = False
    healthy: bool = False
    executionState: str = ""
    lastExecuted: datetime | None = None
    lastEvent: datetime | None = None
    errorConditions: tuple[ErrorCondition, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lastUpdate": _rfc3339(self.lastUpdate),
            "active": self.active,
            "healthy": self.healthy,
            "executionState": self.executionState,
            "lastExecuted": _rfc3339(self.lastExecuted),
            "lastEvent": _rfc3339(self.lastEvent),
            "errorConditions": [c.to_dict() for c in self.errorConditions],
        }
        return {k: v for k, v in out.items() if v is not None}


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


class KeyInfo(Protocol):
    """What validation needs to know about a data-set key (``evaluator.query.schema.FieldSpec``)."""

    @property
    def numeric(self) -> bool: ...


class QueryCatalog(Protocol):
    """Plug point for the query language: compile a query, check a template's query, look up a key.
    All raise ``ValueError`` (``evaluator.query.QueryError``) with a one-line message that may carry a
    ``suggestion``."""

    def compile(self, text: str, dataset: str) -> object: ...

    def check_template(self, text: str, dataset: str) -> None: ...

    def key(self, dataset: str, key: str) -> KeyInfo: ...


class EvaluatorQueryCatalog:
    """The production catalog: ``evaluator.query`` (parser, validator and per-data-set schema)."""

    def compile(self, text: str, dataset: str) -> object:
        return query.compile_query(text, dataset)

    def check_template(self, text: str, dataset: str) -> None:
        """A template's query: full syntax check; keys checked everywhere; values checked except the
        ``<placeholder>`` blanks (quoted or not) that a user fills in when making an alert."""
        expr = query.parse(_quote_placeholders(text))
        if expr is None:
            return
        for node in walk(expr):
            if isinstance(node, query.Selector | query.SetSelector):
                values = [node.value] if isinstance(node, query.Selector) else [m.value for m in node.members]
                if any(isinstance(v, str) and PLACEHOLDER.fullmatch(v) for v in values):
                    schema.field(dataset, node.key)
                else:
                    query.validate(node, dataset)

    def key(self, dataset: str, key: str) -> KeyInfo:
        return schema.field(dataset, key)


DEFAULT_CATALOG: QueryCatalog = EvaluatorQueryCatalog()


def validate_name(name: Any, *, path: str = "metadata.name") -> list[FieldError]:
    """A DNS-1123 subdomain: lower-case alphanumerics, '-' and '.', starting and ending alphanumeric."""
    if not isinstance(name, str) or not name:
        return [FieldError(path, name, "required: a lower-case name such as 'my-alert'")]
    if len(name) > NAME_MAX:
        return [FieldError(path, name, f"must be at most {NAME_MAX} characters (has {len(name)})")]
    if not _NAME.fullmatch(name):
        hint = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.") or "my-alert"
        return [
            FieldError(
                path,
                name,
                "must consist of lower-case alphanumerics, '-' or '.', and start and end with an "
                f"alphanumeric (e.g. {hint!r})",
            )
        ]
    return []


def validate_spec(
    raw: Any,
    *,
    template: bool,
    catalog: QueryCatalog = DEFAULT_CATALOG,
    flush_intervals: Mapping[str, timedelta] = DEFAULT_FLUSH_INTERVALS,
    path: str = "spec",
) -> tuple[GlobalAlertSpec, list[SpecWarning]]:
    """Validate a raw spec mapping; return the spec with defaults filled in, and any warnings.

    ``template`` allows ``<placeholder>`` values (a GlobalAlertTemplate is a form to fill in); a
    GlobalAlert must not keep any. Raises ``SpecInvalid`` listing every problem.
    """
    checker = _SpecChecker(template=template, catalog=catalog, path=path)
    spec = checker.check(raw)
    if checker.errors or spec is None:
        raise SpecInvalid(checker.errors)
    warnings: list[SpecWarning] = []
    flush = flush_intervals.get(spec.dataSet, timedelta(0))
    if spec.lookback <= spec.period + flush:
        lookback = format_go_duration(spec.lookback)
        period = format_go_duration(spec.period)
        warnings.append(
            SpecWarning(
                f"{path}.lookback",
                lookback,
                f"lookback {lookback} is not longer than period {period} plus the {FLUSH_SETTING[spec.dataSet]}"
                f" ({format_go_duration(flush)}): logs flushed late can fall between runs; use a lookback"
                f" above {format_go_duration(spec.period + flush)}",
            )
        )
    return spec, warnings


class _SpecChecker:
    def __init__(self, *, template: bool, catalog: QueryCatalog, path: str) -> None:
        self.template = template
        self.catalog = catalog
        self.path = path
        self.errors: list[FieldError] = []

    def fail(self, key: str, value: Any, reason: str) -> None:
        self.errors.append(FieldError(f"{self.path}.{key}" if key else self.path, value, reason))

    def check(self, raw: Any) -> GlobalAlertSpec | None:
        if not isinstance(raw, Mapping):
            self.fail("", raw, "required: an object with description, severity, dataSet and optional fields")
            return None
        for key in raw:
            if key not in SPEC_KEYS:
                self.fail(str(key), raw[key], _unknown_key_reason(str(key), SPEC_KEYS, "spec field"))
        description = self.description(raw.get("description"))
        severity = self.severity(raw.get("severity"))
        dataset = self.dataset(raw.get("dataSet"))
        period = self.duration("period", raw.get("period"), DEFAULT_PERIOD)
        lookback = self.duration("lookback", raw.get("lookback"), DEFAULT_LOOKBACK)
        query = self.query(_blank_none(raw.get("query")), dataset)
        aggregate_by = self.aggregate_by(raw.get("aggregateBy"), dataset)
        metric = self.choice("metric", _blank_none(raw.get("metric")), METRICS)
        field_name = self.field(_blank_none(raw.get("field")), dataset, metric)
        condition = self.choice("condition", _blank_none(raw.get("condition")), CONDITIONS)
        threshold = self.threshold(raw.get("threshold"))
        self.combinations(raw, metric, field_name, condition, threshold)
        if description is not None:
            self.variables(description, aggregate_by, _blank_none(raw.get("metric")))
        if self.errors or description is None or severity is None or dataset is None:
            return None
        assert period is not None and lookback is not None and query is not None and aggregate_by is not None
        return GlobalAlertSpec(
            description=description,
            severity=severity,
            dataSet=dataset,
            period=period,
            lookback=lookback,
            query=query,
            aggregateBy=aggregate_by,
            field=field_name,
            metric=metric,
            condition=condition,
            threshold=threshold,
        )

    def description(self, value: Any) -> str | None:
        if value is None or value == "":
            self.fail(
                "description",
                value,
                "required: the text of generated events, e.g. 'Denied flows from ${source_namespace}'",
            )
            return None
        if not isinstance(value, str):
            self.fail("description", value, "must be a string")
            return None
        self.no_placeholder("description", value)
        return value

    def severity(self, value: Any) -> int | None:
        if value is None:
            self.fail("severity", value, "required: an integer from 1 to 100")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail("severity", value, "must be an integer from 1 to 100")
            return None
        if isinstance(value, float) and not value.is_integer():
            self.fail("severity", value, "must be a whole number from 1 to 100")
            return None
        if not 1 <= value <= 100:
            self.fail("severity", value, "must be from 1 to 100")
            return None
        return int(value)

    def dataset(self, value: Any) -> str | None:
        if value is None or value == "":
            self.fail("dataSet", value, "required: one of audit, dns, flows")
            return None
        if value not in DATASETS:
            self.fail("dataSet", value, _unknown_key_reason(str(value), DATASETS, "data set"))
            return None
        return str(value)

    def duration(self, key: str, value: Any, default: timedelta) -> timedelta | None:
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            self.fail(key, value, 'must be a Go duration string with units, e.g. "5m", "1h30m", "90s"')
            return None
        try:
            parsed = parse_go_duration(value)
        except DurationError as exc:
            self.fail(key, value, str(exc))
            return None
        if parsed < timedelta(0):
            self.fail(key, value, "must not be negative")
            return None
        if parsed < MIN_PERIOD:
            self.fail(key, value, f"must be at least 1m (got {format_go_duration(parsed)})")
            return None
        return parsed

    def query(self, value: Any, dataset: str | None) -> str | None:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail("query", value, 'must be a string, e.g. "action = deny AND dest_port = 22"')
            return None
        if dataset is None:
            return value
        placeholders = [m.group(0) for m in PLACEHOLDER.finditer(value)]
        if placeholders and not self.template:
            self.fail("query", value, _placeholder_reason(placeholders))
            return None
        try:
            if placeholders:
                self.catalog.check_template(value, dataset)
            else:
                self.catalog.compile(value, dataset)
        except ValueError as exc:
            self.fail("query", value, _query_reason(exc, dataset))
            return None
        return value

    def aggregate_by(self, value: Any, dataset: str | None) -> tuple[str, ...] | None:
        if value is None:
            return ()
        if isinstance(value, str):
            self.fail("aggregateBy", value, f"must be a list of keys, e.g. [{value}]")
            return None
        if not isinstance(value, list):
            self.fail("aggregateBy", value, "must be a list of keys, e.g. [source_namespace, source_name_aggr]")
            return None
        keys: list[str] = []
        ok = True
        for i, key in enumerate(value):
            where = f"aggregateBy[{i}]"
            if not isinstance(key, str) or not key:
                self.fail(where, key, "must be a key name (string)")
                ok = False
                continue
            if key in keys:
                self.fail(where, key, f"duplicate key {key!r}")
                ok = False
                continue
            if dataset is not None and not self.known_key(where, key, dataset):
                ok = False
                continue
            keys.append(key)
        return tuple(keys) if ok else None

    def known_key(self, where: str, key: str, dataset: str) -> KeyInfo | None:
        if self.template and PLACEHOLDER.fullmatch(key):
            return None
        try:
            return self.catalog.key(dataset, key)
        except ValueError as exc:
            self.fail(where, key, _query_reason(exc, dataset))
            return None

    def choice(self, key: str, value: Any, allowed: tuple[str, ...]) -> str | None:
        if value is None:
            return None
        if value not in allowed:
            self.fail(key, value, _unknown_key_reason(str(value), allowed, key))
            return None
        return str(value)

    def field(self, value: Any, dataset: str | None, metric: str | None) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail("field", value, "must be the name of a numeric key")
            return None
        if dataset is None:
            return value
        info = self.known_key("field", value, dataset)
        if info is None:
            return None
        if metric in FIELD_METRICS and not info.numeric:
            self.fail("field", value, f"metric {metric} needs a numeric field; {value!r} is not numeric in {dataset}")
            return None
        return value

    def threshold(self, value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail("threshold", value, "must be a finite number, e.g. 100 or 0.5")
            return None
        return float(value)

    def combinations(
        self,
        raw: Mapping[str, Any],
        metric: str | None,
        field_name: str | None,
        condition: str | None,
        threshold: float | None,
    ) -> None:
        raw_metric = _blank_none(raw.get("metric"))
        raw_field = _blank_none(raw.get("field"))
        raw_condition = _blank_none(raw.get("condition"))
        raw_threshold = raw.get("threshold")
        if raw_metric == "count" and raw_field is not None:
            self.fail("field", raw_field, "metric count counts records and takes no field; remove field")
        if raw_metric in FIELD_METRICS and raw_field is None:
            self.fail("field", None, f"required with metric {raw_metric}: the numeric key to aggregate")
        if raw_field is not None and raw_metric is None:
            self.fail("metric", None, f"required with field {raw_field!r}: one of avg, max, min, sum")
        if raw_metric is not None and raw_condition is None:
            self.fail("condition", None, f"required with metric {raw_metric}: one of {', '.join(CONDITIONS)}")
        if raw_condition is not None and raw_metric is None:
            self.fail("metric", None, f"required with condition {raw_condition}: one of {', '.join(METRICS)}")
        if raw_condition is not None and raw_threshold is None:
            self.fail("threshold", None, f"required with condition {raw_condition}: the number to compare with")
        if raw_threshold is not None and raw_condition is None:
            self.fail("condition", None, f"required with threshold {raw_threshold}: one of {', '.join(CONDITIONS)}")

    def variables(self, description: str, aggregate_by: tuple[str, ...] | None, metric: Any) -> None:
        allowed = list(aggregate_by or ())
        if isinstance(metric, str) and metric in METRICS:
            allowed.append(metric)
        for match in _VARIABLE.finditer(description):
            name = match.group(1)
            if name in allowed:
                continue
            if aggregate_by is None:
                continue  # aggregateBy itself is wrong and reported; do not pile on
            if allowed:
                hint = f"use one of {', '.join('${' + a + '}' for a in allowed)}"
            else:
                hint = "this alert has no aggregateBy keys or metric to substitute"
            if self.template and PLACEHOLDER.fullmatch(name):
                continue
            self.fail(
                "description",
                description,
                f"${{{name}}} is neither an aggregateBy key nor the metric; {hint}",
            )

    def no_placeholder(self, key: str, value: str) -> None:
        if self.template:
            return
        placeholders = [m.group(0) for m in PLACEHOLDER.finditer(value)]
        if placeholders:
            self.fail(key, value, _placeholder_reason(placeholders))


def _blank_none(value: Any) -> Any:
    return None if value == "" else value


def _quote_placeholders(text: str) -> str:
    """Put quotes around bare ``<blank>`` placeholders so that the query parses."""
    out: list[str] = []
    last = 0
    for match in PLACEHOLDER.finditer(text):
        start, end = match.span()
        quoted = start > 0 and text[start - 1] in "\"'"
        out.append(text[last:start])
        out.append(match.group(0) if quoted else f'"{match.group(0)}"')
        last = end
    out.append(text[last:])
    return "".join(out)


def _placeholder_reason(placeholders: list[str]) -> str:
    listed = ", ".join(placeholders)
    return f"contains the template placeholder(s) {listed}; replace them with real values"


def _query_reason(exc: ValueError, dataset: str) -> str:
    reason = str(exc)
    suggestion = getattr(exc, "suggestion", None)
    if suggestion and str(suggestion) not in reason:
        reason = f"{reason} (did you mean {suggestion!r}?)"
    return reason


def _unknown_key_reason(value: str, allowed: tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    lowered = [a for a in allowed if a.lower() == value.lower()]
    hint = lowered or close
    text = f"unknown {what} {value!r}; valid: {', '.join(allowed)}"
    if hint:
        text += f" (did you mean {hint[0]!r}?)"
    return text
