"""One alert execution: a pure function of (spec, window, store) giving what the alert reports."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from evaluator.alerts import GlobalAlertSpec
from evaluator.engine.logstore import LogStore
from evaluator.engine.model import Bucket, BucketCapReached, Finding, RunResult, Window
from evaluator.engine.template import fill
from evaluator.query import compile_query

DEFAULT_BUCKET_CAP = 10_000

CONDITIONS: Mapping[str, Callable[[float, float], bool]] = {
    "eq": operator.eq,
    "not_eq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


@lru_cache(maxsize=4096)
def _compiled(query: str, dataset: str) -> Any:
    return compile_query(query, dataset)


def instance_key(aggregate_by: Sequence[str], key: Sequence[Any]) -> str:
    """The stable name of an aggregation pattern's alert instance (canonical JSON of its values)."""
    return json.dumps(dict(zip(aggregate_by, key, strict=True)), sort_keys=True, default=str, separators=(",", ":"))


def condition_holds(spec: GlobalAlertSpec, value: float | None) -> bool:
    if spec.condition is None or spec.threshold is None:
        return True
    if value is None:  # min/max/avg of no values: nothing to compare
        return False
    return CONDITIONS[spec.condition](value, float(spec.threshold))


def run(spec: GlobalAlertSpec, window: Window, store: LogStore, *, bucket_cap: int = DEFAULT_BUCKET_CAP) -> RunResult:
    """What ``spec`` reports over ``window``; raises ``BucketCapReached``, ``StoreError`` or ``QueryError``.

    - no aggregateBy and no metric: one finding per hit, the record whole;
    - aggregateBy and no metric: one finding per aggregation pattern, the record its fields;
    - a metric: one finding per bucket (a single bucket without aggregateBy) whose value satisfies the
      condition, the record the aggregated fields plus ``{metric: value}``.
    """
    query = _compiled(spec.expanded_query(), spec.dataSet)
    aggregate_by = tuple(spec.aggregateBy or ())
    metric = spec.metric or None
    if not aggregate_by and metric is None:
        return _run_per_hit(spec, window, store, query, bucket_cap)
    findings: list[Finding] = []
    examined = 0
    buckets = store.aggregate(
        dataset=spec.dataSet,
        query=query,
        window=window,
        aggregate_by=aggregate_by,
        metric=metric,
        field=spec.field or None,
        limit=bucket_cap + 1,
    )
    for bucket in buckets:
        examined += 1
        if examined > bucket_cap:
            raise BucketCapReached(
                f"more than {bucket_cap} aggregation buckets for aggregateBy {list(aggregate_by)}: results would "
                "be incomplete; narrow the query, aggregate by fewer fields or raise the bucket cap"
            )
        finding = _bucket_finding(spec, aggregate_by, metric, bucket)
        if finding is not None:
            findings.append(finding)
    return RunResult(window=window, findings=tuple(findings), per_hit=False, examined=examined)


def _bucket_finding(
    spec: GlobalAlertSpec, aggregate_by: tuple[str, ...], metric: str | None, bucket: Bucket
) -> Finding | None:
    if metric is None and bucket.doc_count == 0:
        return None
    value: float | None = None
    if metric is not None:
        value = float(bucket.doc_count) if metric == "count" else bucket.value
        if not condition_holds(spec, value):
            return None
    record: dict[str, Any] = dict(zip(aggregate_by, bucket.key, strict=True))
    if metric is not None:
        record[metric] = value
    return Finding(
        key=instance_key(aggregate_by, bucket.key),
        record=record,
        description=fill(spec.description, record),
        value=value,
        summary=fill(spec.summary or spec.description, record),
    )


def _run_per_hit(spec: GlobalAlertSpec, window: Window, store: LogStore, query: Any, bucket_cap: int) -> RunResult:
    findings: list[Finding] = []
    for hit in store.hits(dataset=spec.dataSet, query=query, window=window, limit=bucket_cap + 1):
        if len(findings) >= bucket_cap:
            raise BucketCapReached(
                f"more than {bucket_cap} matching records for an alert without aggregateBy: each would be an "
                "event; narrow the query or add aggregateBy"
            )
        findings.append(
            Finding(
                key=f"hit:{hit.id}",
                record=dict(hit.record),
                description=fill(spec.description, hit.record),
                hit_time=hit.time,
                summary=fill(spec.summary or spec.description, hit.record),
            )
        )
    return RunResult(window=window, findings=tuple(findings), per_hit=True, examined=len(findings))
