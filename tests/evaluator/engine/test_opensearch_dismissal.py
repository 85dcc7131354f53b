"""The OpenSearch event index keeps dismissals too: the filters it sends (severity range, alert set, dismissed)
and the first-dismissal-wins update, held by recorded requests (no OpenSearch here) and by opensearch-py's own
transport accepting the calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from opensearchpy import NotFoundError, OpenSearch

from devstack.services import free_port
from evaluator.engine.model import StoreError
from evaluator.engine.opensearch_events import OpenSearchEventStore
from evaluator.events import Dismissal, Event, EventQuery

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OK = {"timed_out": False, "_shards": {"total": 1, "successful": 1, "failed": 0}}


class RecordedIndex:
    def __init__(self, source: dict[str, Any] | None = None) -> None:
        self.source = source
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def search(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("search", params))
        hits = [{"_id": "e1", "_source": self.source}] if self.source else []
        return {**OK, "hits": {"total": {"value": len(hits)}, "hits": hits}}

    def update(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("update", params))
        if self.source is None:
            raise NotFoundError(404, "document_missing_exception", {})
        return {"result": "updated"}

    def get(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("get", params))
        return {"_id": params["id"], "_source": self.source}


def stored(dismissed: dict[str, str] | None = None) -> dict[str, Any]:
    source = Event(time=T0, alert="a", description="d", severity=50, record={}).to_json()
    return {**source, "dismissed": dismissed} if dismissed else source


def test_filters_of_the_alerts_page_in_the_query() -> None:
    index = RecordedIndex(stored({"by": "alice", "at": "2026-01-01T12:05:00Z"}))
    page = OpenSearchEventStore(index, index="ev").search(
        EventQuery(severity_min=20, severity_max=80, alerts=("a", "b"), dismissed=True)
    )
    [event] = page.items
    assert event.id == "e1" and event.dismissed == Dismissal("alice", datetime(2026, 1, 1, 12, 5, tzinfo=UTC))
    query = index.calls[0][1]["body"]["query"]["bool"]
    assert query["filter"] == [
        {"range": {"severity": {"gte": 20, "lte": 80}}},
        {"terms": {"alert": ["a", "b"]}},
        {"exists": {"field": "dismissed.at"}},
    ]
    assert "must_not" not in query
    assert index.calls[0][1]["body"]["sort"] == [{"time": {"order": "desc"}}]
    OpenSearchEventStore(index, index="ev").search(EventQuery(dismissed=False, order="severity"))
    assert index.calls[1][1]["body"]["query"]["bool"]["must_not"] == [{"exists": {"field": "dismissed.at"}}]
    assert index.calls[1][1]["body"]["sort"] == [{"severity": {"order": "desc"}}, {"time": {"order": "desc"}}]


def test_dismiss_keeps_the_first_dismissal_and_reads_the_document_back() -> None:
    index = RecordedIndex(stored({"by": "alice", "at": "2026-01-01T12:05:00Z"}))
    event = OpenSearchEventStore(index, index="ev").dismiss("e1", Dismissal("bob", T0))
    assert event is not None and event.dismissed is not None and event.dismissed.by == "alice"
    name, update = index.calls[0]
    assert name == "update" and update["id"] == "e1" and update["refresh"] == "wait_for"
    assert "ctx.op = 'noop'" in update["body"]["script"]["source"]
    assert update["body"]["script"]["params"] == {"d": {"by": "bob", "at": "2026-01-01T12:00:00Z"}}
    assert OpenSearchEventStore(RecordedIndex(None), index="ev").dismiss("gone", Dismissal("bob", T0)) is None


def test_real_client_accepts_the_dismiss_calls() -> None:
    client = OpenSearch(hosts=[f"http://127.0.0.1:{free_port()}"], timeout=2, max_retries=0)
    with pytest.raises(StoreError, match="(?i)dismiss e1 failed.*connection"):
        OpenSearchEventStore(client, timeout=2).dismiss("e1", Dismissal("bob", T0))
