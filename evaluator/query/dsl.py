"""OpenSearch DSL for a validated query tree, and the aggregation requests alerts run.

``=`` is a ``term`` (on ``ip`` fields a CIDR term matches the whole network), ``!=`` a ``must_not``,
orderings ``range``, AND/OR/NOT ``bool``; set members are ``term``/``terms`` or ``wildcard``. Keys under
nested objects (flows ``source_labels``/``dest_labels``/``policies``, dns ``servers``/``rrsets``) are
wrapped in ``nested`` so that one element has to satisfy the selector. A negation wraps the whole
positive clause, so ``!=`` and ``NOTIN`` select records where no value matches (or that lack the key),
the same as the SQL store and ``evaluate.matches``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from evaluator.query.ast import And, Comparator, Expr, Member, Not, Scalar, Selector, SetSelector, depth
from evaluator.query.errors import QueryError
from evaluator.query.parser import MAX_DEPTH
from evaluator.query.schema import FIELDS, TIME_FIELD, FieldSpec, FieldType, check_dataset, field
from evaluator.query.values import format_date
from evaluator.vocabulary import METRICS

Clause = dict[str, Any]

COMPOSITE = "aggregate"
METRIC = "metric"
DEFAULT_PAGE_SIZE = 500
DATE_FORMAT = "strict_date_optional_time"

_RANGE = {Comparator.LT: "lt", Comparator.LE: "lte", Comparator.GT: "gt", Comparator.GE: "gte"}


def to_dsl(expr: Expr | None, dataset: str, *, start: datetime | None = None, end: datetime | None = None) -> Clause:
    """An OpenSearch query clause for ``expr`` (``match_all`` when None), optionally limited to the
    time range [start, end) on the data set's time field."""
    check_dataset(dataset)
    if expr is not None and depth(expr) > MAX_DEPTH:
        raise QueryError(f"query nests NOT and parentheses more than {MAX_DEPTH} levels deep")
    clause = {"match_all": {}} if expr is None else _Compiler(dataset).expr(expr)
    window = time_range(dataset, start=start, end=end)
    if window is None:
        return clause
    return {"bool": {"filter": [window] if expr is None else [clause, window]}}


def time_range(dataset: str, *, start: datetime | None, end: datetime | None) -> Clause | None:
    """``range`` on the data set's time field: start inclusive, end exclusive."""
    bounds: dict[str, str] = {}
    if start is not None:
        bounds["gte"] = format_date(start)
    if end is not None:
        bounds["lt"] = format_date(end)
    if not bounds:
        return None
    return {"range": {TIME_FIELD[check_dataset(dataset)]: {**bounds, "format": DATE_FORMAT}}}


class _Compiler:
    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def expr(self, node: Expr) -> Clause:
        if isinstance(node, Selector):
            return self.selector(node)
        if isinstance(node, SetSelector):
            return self.set_selector(node)
        if isinstance(node, Not):
            return {"bool": {"must_not": [self.expr(node.operand)]}}
        if isinstance(node, And):
            return {"bool": {"filter": [self.expr(operand) for operand in node.operands]}}
        return {"bool": {"should": [self.expr(operand) for operand in node.operands], "minimum_should_match": 1}}

    def selector(self, node: Selector) -> Clause:
        spec = field(self.dataset, node.key, position=node.key_position)
        if node.op.is_range:
            return _nested(spec, _range(spec, {_RANGE[node.op]: node.value}))
        positive = _nested(spec, _term(spec, node.value))
        if node.op is Comparator.NE:
            return {"bool": {"must_not": [positive]}}
        return positive

    def set_selector(self, node: SetSelector) -> Clause:
        spec = field(self.dataset, node.key, position=node.key_position)
        positive = _nested(spec, _members(spec, node.members))
        if node.negated:
            return {"bool": {"must_not": [positive]}}
        return positive


def _range(spec: FieldSpec, bounds: dict[str, Scalar]) -> Clause:
    if spec.type is FieldType.DATE:
        # The value's format is given, so it parses whatever the index maps the field as (Calico's flow
        # and DNS indices hold epoch seconds).
        return {"range": {spec.key: {**bounds, "format": DATE_FORMAT}}}
    return {"range": {spec.key: bounds}}


def _term(spec: FieldSpec, value: Scalar) -> Clause:
    if spec.type is FieldType.DATE:
        return _range(spec, {"gte": value, "lte": value})
    return {"term": {spec.key: value}}


def _members(spec: FieldSpec, members: Sequence[Member]) -> Clause:
    exact: list[Scalar] = [member.value for member in members if not member.pattern]
    clauses: list[Clause] = []
    if spec.type is FieldType.DATE:
        clauses.extend(_term(spec, value) for value in exact)
    elif len(exact) == 1:
        clauses.append({"term": {spec.key: exact[0]}})
    elif exact:
        clauses.append({"terms": {spec.key: exact}})
    for member in members:
        if member.pattern:
            # In OpenSearch wildcards only * and ? are special, and a backslash escapes.
            value = str(member.value).replace("\\", "\\\\")
            clauses.append({"wildcard": {spec.key: {"value": value}}})
    if len(clauses) == 1:
        return clauses[0]
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def _nested(spec: FieldSpec, clause: Clause) -> Clause:
    if spec.nested is None:
        return clause
    return {"nested": {"path": spec.nested, "query": clause}}


def aggregation_request(
    dataset: str,
    aggregate_by: Sequence[str] = (),
    metric: str | None = None,
    field: str | None = None,
    size: int = DEFAULT_PAGE_SIZE,
    after_key: dict[str, Any] | None = None,
) -> Clause:
    """The search body (without ``query``) that computes an alert's aggregation.

    With ``aggregate_by``: a composite aggregation named ``aggregate`` over those keys (``size`` buckets a
    page; pass the response's ``after_key`` for the next page) whose buckets carry ``doc_count`` and, for
    min/max/sum/avg, a ``metric`` sub-aggregation. Without: ``track_total_hits`` gives the count, and a
    top-level ``metric`` aggregation the other metrics. With neither metric nor keys, the matching
    records themselves, newest first, ``size`` at a time.
    """
    check_dataset(dataset)
    keys = _aggregation_keys(dataset, aggregate_by)
    metric_agg = _metric_aggregation(dataset, metric, field)
    if size < 1:
        raise QueryError(f"page size must be at least 1, not {size}")
    if keys:
        composite: Clause = {
            "size": size,
            "sources": [{key: {"terms": {"field": key, "missing_bucket": True}}} for key in keys],
        }
        if after_key:
            composite["after"] = dict(after_key)
        bucket: Clause = {"composite": composite}
        if metric_agg is not None:
            bucket["aggs"] = {METRIC: metric_agg}
        return {"size": 0, "track_total_hits": True, "aggs": {COMPOSITE: bucket}}
    if metric is None:
        return {"size": size, "track_total_hits": True, "sort": [{TIME_FIELD[dataset]: {"order": "desc"}}]}
    body: Clause = {"size": 0, "track_total_hits": True}
    if metric_agg is not None:
        body["aggs"] = {METRIC: metric_agg}
    return body


def search_body(
    expr: Expr | None,
    dataset: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    aggregate_by: Sequence[str] = (),
    metric: str | None = None,
    field: str | None = None,
    size: int = DEFAULT_PAGE_SIZE,
    after_key: dict[str, Any] | None = None,
) -> Clause:
    """A whole search request: the query over [start, end) plus ``aggregation_request``."""
    body = aggregation_request(dataset, aggregate_by, metric, field, size, after_key)
    return {"query": to_dsl(expr, dataset, start=start, end=end), **body}


def _aggregation_keys(dataset: str, aggregate_by: Sequence[str]) -> list[str]:
    if isinstance(aggregate_by, str):
        raise QueryError(f"aggregateBy must be a list of keys, not the string {aggregate_by!r}")
    keys: list[str] = []
    for key in aggregate_by:
        spec = field(dataset, key)
        if spec.multi_valued:
            raise QueryError(
                f"cannot aggregate by {key!r}: it holds many values per record in data set {dataset}",
                expected=tuple(_scalar_keys(dataset)),
            )
        keys.append(key)
    return keys


def _metric_aggregation(dataset: str, metric: str | None, field_key: str | None) -> Clause | None:
    if metric is None or metric == "count":
        return None
    if metric not in METRICS:
        raise QueryError(f"unknown metric {metric!r}", expected=METRICS)
    if not field_key:
        raise QueryError(f"metric {metric} needs a field", expected=tuple(_numeric_keys(dataset)))
    spec = field(dataset, field_key)
    if not spec.numeric:
        raise QueryError(
            f"metric {metric} needs a numeric field; {field_key!r} is {spec.type.value}",
            expected=tuple(_numeric_keys(dataset)),
        )
    return {metric: {"field": field_key}}


def _scalar_keys(dataset: str) -> list[str]:
    return [key for key, spec in FIELDS[dataset].items() if not spec.multi_valued]


def _numeric_keys(dataset: str) -> list[str]:
    return [key for key, spec in FIELDS[dataset].items() if spec.numeric]
