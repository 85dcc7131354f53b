"""The words of a GlobalAlert spec, defined once: data sets, metrics, conditions and alert types.

The StrEnums are the source (the spec model's field types, hence the OpenAPI and CRD enums); the tuples of
plain strings are for messages, the query schema and the CLI. No imports, so every layer can use it.
"""

from __future__ import annotations

from enum import StrEnum


class DataSet(StrEnum):
    AUDIT = "audit"
    DNS = "dns"
    FLOWS = "flows"


class Metric(StrEnum):
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    COUNT = "count"


class Condition(StrEnum):
    EQ = "eq"
    NOT_EQ = "not_eq"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"


class AlertType(StrEnum):
    RULE_BASED = "RuleBased"


DATASETS: tuple[str, ...] = tuple(d.value for d in DataSet)
METRICS: tuple[str, ...] = tuple(m.value for m in Metric)
FIELD_METRICS: tuple[str, ...] = ("avg", "max", "min", "sum")
CONDITIONS: tuple[str, ...] = tuple(c.value for c in Condition)
ALERT_TYPES: tuple[str, ...] = tuple(t.value for t in AlertType)
