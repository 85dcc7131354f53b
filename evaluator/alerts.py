"""GlobalAlert / GlobalAlertTemplate specs: validation into the model of ``evaluator.spec``, and the alert status.

Pure data and rules; no web framework. ``validate_spec`` collects every problem of a raw ``spec`` mapping
(as decoded from JSON or YAML) into one ``SpecInvalid`` so a user sees them all at once, each with the
field path, the offending value and what would be right. A lookback too short to cover the period plus
the log flush interval is accepted, with a ``SpecWarning``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from evaluator import query
from evaluator.durations import format_go_duration
from evaluator.events import rfc3339
from evaluator.query import parser, schema
from evaluator.query.ast import walk
from evaluator.spec import (
    SPEC_KEYS,
    GlobalAlertSpec,
    GlobalAlertTemplateSpec,
    Substitution,
)
from evaluator.spec_rules import DEFAULT_LOOKBACK, DEFAULT_PERIOD, MIN_PERIOD, PLACEHOLDER, PROBLEMS, unknown_reason
from evaluator.vocabulary import CONDITIONS, DATASETS, FIELD_METRICS, METRICS, AlertType, Condition, DataSet, Metric

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
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


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
    return None if value is None else rfc3339(value)


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
        parser.check_length(text)
        quoted, inserted = _quote_placeholders(text)
        try:
            expr = parser.parse(quoted, length_checked=True)
        except query.QueryError as error:
            # Positions as the user wrote the query, not counting the quotes added around placeholders.
            if error.position is not None:
                error.position -= sum(1 for at in inserted if at < error.position)
            raise error.with_query(text) from None
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
    if not NAME_PATTERN.fullmatch(name):
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


__all__ = [
    "CONDITIONS",
    "DATASETS",
    "DEFAULT_LOOKBACK",
    "DEFAULT_PERIOD",
    "FIELD_METRICS",
    "METRICS",
    "MIN_PERIOD",
    "PLACEHOLDER",
    "SPEC_KEYS",
    "AlertStatus",
    "AlertType",
    "Condition",
    "DataSet",
    "ErrorCondition",
    "FieldError",
    "GlobalAlertSpec",
    "GlobalAlertTemplateSpec",
    "Metric",
    "SpecInvalid",
    "SpecWarning",
    "Substitution",
    "validate_name",
    "validate_spec",
]

_REQUIRED = {
    "description": "required: the text of generated events, e.g. 'Denied flows from ${source_namespace}'",
    "severity": "required: an integer from 1 to 100",
    "dataSet": "required: one of audit, dns, flows",
}


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
    model = GlobalAlertTemplateSpec if template else GlobalAlertSpec
    context: dict[str, Any] = {"catalog": catalog, "problems": []}
    errors: list[FieldError] = []
    spec: GlobalAlertSpec | None = None
    try:
        spec = model.model_validate(raw, context=context)
    except ValidationError as exc:
        errors.extend(_field_errors(exc, raw, path))
    combined = [FieldError(f"{path}.{where}", value, reason) for where, value, reason in context["problems"]]
    errors = _in_key_order(errors + combined)
    if errors or spec is None:
        raise SpecInvalid(errors)
    if type(spec) is not GlobalAlertSpec:  # a template's values, as the one spec type the engine runs
        spec = GlobalAlertSpec.model_construct(**dict(spec))
    return spec, lookback_warnings(spec, flush_intervals, path=path)


def lookback_warnings(
    spec: GlobalAlertSpec, flush_intervals: Mapping[str, timedelta], *, path: str = "spec"
) -> list[SpecWarning]:
    """A run at t reads [t - lookback, t]; a record stamped ts reaches the store by ts + flush, and some run
    falls in [ts + flush, ts + flush + period). So ``lookback >= period + flush`` leaves no gap: warn
    only below that."""
    flush = flush_intervals.get(spec.dataSet, timedelta(0))
    if spec.lookback >= spec.period + flush:
        return []
    lookback = format_go_duration(spec.lookback)
    period = format_go_duration(spec.period)
    return [
        SpecWarning(
            f"{path}.lookback",
            lookback,
            f"lookback {lookback} is shorter than period {period} plus the {FLUSH_SETTING[spec.dataSet]}"
            f" ({format_go_duration(flush)}): logs flushed late can fall between runs; use a lookback"
            f" of at least {format_go_duration(spec.period + flush)}",
        )
    ]


def _field_errors(exc: ValidationError, raw: Any, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    for error in exc.errors():
        loc = error["loc"]
        where = _join(path, loc)
        kind = error["type"]
        if kind == PROBLEMS:
            for sub, value, reason in error["ctx"]["problems"]:
                out.append(FieldError(where + sub, value, reason))
        elif kind == "missing":
            out.append(FieldError(where, None, _REQUIRED.get(str(loc[-1]), "required")))
        elif kind == "extra_forbidden":
            out.append(FieldError(where, error["input"], unknown_reason(str(loc[-1]), SPEC_KEYS, "spec field")))
        elif not loc:
            out.append(
                FieldError(path, raw, "required: an object with description, severity, dataSet and optional fields")
            )
        else:
            out.append(FieldError(where, error.get("input"), str(error["msg"])))
    return out


def _join(path: str, loc: tuple[int | str, ...]) -> str:
    out = path
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _in_key_order(errors: list[FieldError]) -> list[FieldError]:
    """Errors sorted by the spec key they concern (documented order), stable within a key."""

    def rank(error: FieldError) -> int:
        key = re.split(r"[.\[]", error.path, maxsplit=2)[1] if "." in error.path else ""
        return SPEC_KEYS.index(key) if key in SPEC_KEYS else -1

    return sorted(errors, key=rank)


def _quote_placeholders(text: str) -> tuple[str, list[int]]:
    """Put quotes around bare ``<blank>`` placeholders so that the query parses; also the offsets (in the quoted
    text) of the quotes added."""
    out: list[str] = []
    inserted: list[int] = []
    size = 0
    last = 0
    for match in PLACEHOLDER.finditer(text):
        start, end = match.span()
        quoted = start > 0 and text[start - 1] in "\"'"
        out.append(text[last:start])
        size += start - last
        if quoted:
            out.append(match.group(0))
            size += end - start
        else:
            inserted += [size, size + 1 + end - start]
            out.append(f'"{match.group(0)}"')
            size += end - start + 2
        last = end
    out.append(text[last:])
    return "".join(out), inserted
