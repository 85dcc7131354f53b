"""The OpenSearch log store: Calico's indices queried with the DSL of ``evaluator.query.dsl``.

Aggregations page through a composite aggregation with ``after_key``; hits through a scroll, oldest
first. A response with shard failures or ``timed_out`` is an error,
never "no data": an alert must not go quiet because half the shards did not answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from evaluator.engine.model import Bucket, Hit, StoreError, Window
from evaluator.events import utc
from evaluator.query import TIME_FIELD
from evaluator.query.dsl import COMPOSITE, METRIC, aggregation_request, to_dsl
from evaluator.query.values import format_date

# Calico Enterprise's index patterns (cluster name "cluster").
DEFAULT_INDICES: Mapping[str, str] = {
    "flows": "tigera_secure_ee_flows.cluster.*",
    "dns": "tigera_secure_ee_dns.cluster.*",
    "audit": "tigera_secure_ee_audit_*.cluster.*",
}


def window_clause(dataset: str, query: Any, window: Window) -> dict[str, Any]:
    """The query limited to ``(start, end]`` on the data set's time field."""
    time_range = {
        "range": {
            TIME_FIELD[dataset]: {
                "gt": format_date(utc(window.start)),
                "lte": format_date(utc(window.end)),
                "format": "strict_date_optional_time",
            }
        }
    }
    return {"bool": {"filter": [to_dsl(query, dataset), time_range]}}


def check_response(response: Mapping[str, Any], index: str) -> None:
    if response.get("timed_out"):
        raise StoreError(f"OpenSearch search of {index} timed out: results would be partial")
    shards = response.get("_shards") or {}
    failed = int(shards.get("failed") or 0)
    if failed:
        reasons = "; ".join(
            str((f.get("reason") or {}).get("reason") or f.get("reason")) for f in shards.get("failures") or []
        )
        raise StoreError(
            f"OpenSearch search of {index}: {failed} of {shards.get('total')} shards failed: {reasons[:500]}"
        )


class OpenSearchLogStore:
    def __init__(
        self,
        client: Any,
        *,
        indices: Mapping[str, str] = DEFAULT_INDICES,
        timeout: float = 30.0,
        page_size: int = 500,
    ) -> None:
        self._client = client  # an opensearchpy.OpenSearch
        self._indices = dict(indices)
        self._timeout = timeout
        self._page_size = page_size

    def _search(self, index: str, body: Mapping[str, Any], **params: Any) -> Mapping[str, Any]:
        try:
            response: Mapping[str, Any] = self._client.search(
                index=index,
                body=body,
                request_timeout=self._timeout,
                params={"timeout": f"{int(self._timeout)}s"},
                **params,
            )
        except Exception as exc:  # opensearch-py raises many types; all mean "no answer"
            raise StoreError(f"OpenSearch search of {index} failed: {exc}") from exc
        check_response(response, index)
        return response

    def aggregate(
        self,
        *,
        dataset: str,
        query: Any,
        window: Window,
        aggregate_by: Sequence[str],
        metric: str | None,
        field: str | None,
        limit: int,
    ) -> Iterator[Bucket]:
        index = self._indices[dataset]
        clause = window_clause(dataset, query, window)
        if not aggregate_by:
            body = {"query": clause, **aggregation_request(dataset, (), metric, field, 1, None)}
            body["size"] = 0
            response = self._search(index, body)
            total = response["hits"]["total"]
            count = int(total["value"] if isinstance(total, Mapping) else total)
            value = (response.get("aggregations") or {}).get(METRIC, {}).get("value")
            if metric == "sum" and value is None:
                value = 0.0
            yield Bucket(key=(), doc_count=count, value=None if value is None else float(value))
            return
        after: dict[str, Any] | None = None
        produced = 0
        while produced < limit:
            size = min(self._page_size, limit - produced)
            body = {"query": clause, **aggregation_request(dataset, aggregate_by, metric, field, size, after)}
            response = self._search(index, body)
            agg = (response.get("aggregations") or {}).get(COMPOSITE) or {}
            buckets = agg.get("buckets") or []
            for b in buckets:
                value = (b.get(METRIC) or {}).get("value")
                if metric == "sum" and value is None:
                    value = 0.0
                yield Bucket(
                    key=tuple(b["key"].get(k) for k in aggregate_by),
                    doc_count=int(b["doc_count"]),
                    value=None if value is None else float(value),
                )
                produced += 1
            after = agg.get("after_key")
            if not buckets or after is None:
                return

    def hits(self, *, dataset: str, query: Any, window: Window, limit: int) -> Iterator[Hit]:
        index = self._indices[dataset]
        time_field = TIME_FIELD[dataset]
        body = {
            "query": window_clause(dataset, query, window),
            "sort": [{time_field: {"order": "asc"}}, "_doc"],
            "size": min(self._page_size, limit),
        }
        response = self._search(index, body, scroll="2m")
        scroll_id = response.get("_scroll_id")
        produced = 0
        try:
            while produced < limit:
                page = response["hits"]["hits"]
                if not page:
                    return
                for h in page:
                    source = h.get("_source") or {}
                    yield Hit(
                        id=f"{h.get('_index')}/{h['_id']}", time=_parse_time(source.get(time_field)), record=source
                    )
                    produced += 1
                    if produced >= limit:
                        return
                try:
                    response = self._client.scroll(scroll_id=scroll_id, scroll="2m", request_timeout=self._timeout)
                except Exception as exc:
                    raise StoreError(f"OpenSearch scroll of {index} failed: {exc}") from exc
                check_response(response, index)
                scroll_id = response.get("_scroll_id", scroll_id)
        finally:
            if scroll_id:
                try:
                    self._client.clear_scroll(scroll_id=scroll_id)
                except Exception:  # the scroll expires by itself
                    pass


def _parse_time(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return datetime.fromtimestamp(0, UTC)
