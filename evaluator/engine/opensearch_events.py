"""Events in an OpenSearch index, beside (after) their SQL commit.

Each event's document id is its dedup key (alert, time, instance), written with ``op_type: create``: an
event sent twice is stored once. The scheduler commits events in SQL with the run (the record of truth for
exactly-once) and then copies them here; ``GET /events`` reads this index when it is configured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from evaluator.engine.model import StoreError
from evaluator.events import Event, EventPage, EventQuery, rfc3339, utc

DEFAULT_INDEX = "policywatch_events"


class OpenSearchEventStore:
    def __init__(self, client: Any, *, index: str = DEFAULT_INDEX, timeout: float = 30.0) -> None:
        self._client = client  # an opensearchpy.OpenSearch
        self._index = index
        self._timeout = timeout

    def add(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        lines: list[str] = []
        for event in events:
            lines.append(json.dumps({"create": {"_index": self._index, "_id": event.dedup}}))
            lines.append(json.dumps(event.to_json()))
        try:
            response = self._client.bulk(
                body="\n".join(lines) + "\n", refresh="wait_for", request_timeout=self._timeout
            )
        except Exception as exc:  # every client failure means the events are not there
            raise StoreError(f"OpenSearch event index {self._index}: bulk write failed: {exc}") from exc
        added = 0
        failures: list[str] = []
        for item in response.get("items", []):
            result = item.get("create", {})
            status = int(result.get("status", 500))
            if status in (200, 201):
                added += 1
            elif status != 409:  # 409: stored before, which is what the id is for
                failures.append(str((result.get("error") or {}).get("reason") or status))
        if failures:
            raise StoreError(f"OpenSearch event index {self._index}: {len(failures)} events refused: {failures[0]}")
        return added

    def search(self, query: EventQuery) -> EventPage:
        filters: list[dict[str, Any]] = []
        if query.alert is not None:
            filters.append({"term": {"alert": query.alert}})
        if query.severity is not None:
            filters.append({"term": {"severity": query.severity}})
        bounds: dict[str, str] = {}
        if query.since is not None:
            bounds["gte"] = rfc3339(query.since)
        if query.until is not None:
            bounds["lt"] = rfc3339(query.until)
        if bounds:
            filters.append({"range": {"time": bounds}})
        body = {
            "query": {"bool": {"filter": filters}},
            "sort": [{"time": {"order": "desc"}}],
            "from": query.offset,
            "size": query.limit,
            "track_total_hits": True,
        }
        try:
            response = self._client.search(index=self._index, body=body, request_timeout=self._timeout)
        except Exception as exc:
            raise StoreError(f"OpenSearch event index {self._index}: search failed: {exc}") from exc
        if response.get("timed_out") or int((response.get("_shards") or {}).get("failed") or 0):
            raise StoreError(f"OpenSearch event index {self._index}: partial answer (timed out or shards failed)")
        hits = response["hits"]
        total = hits["total"]["value"] if isinstance(hits["total"], dict) else hits["total"]
        items = tuple(_event(h["_source"]) for h in hits["hits"])
        return EventPage(items=items, total=int(total))


def _event(source: dict[str, Any]) -> Event:
    return Event(
        time=utc(datetime.fromisoformat(str(source["time"]).replace("Z", "+00:00"))),
        alert=str(source["alert"]),
        description=str(source["description"]),
        summary=str(source.get("summary") or source["description"]),
        severity=int(source["severity"]),
        record=source.get("record") or {},
        type=str(source.get("type") or "global_alert"),
    )
