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
from evaluator.events import Dismissal, Event, EventPage, EventQuery, rfc3339, utc

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
        severity: dict[str, int] = {}
        if query.severity_min is not None:
            severity["gte"] = query.severity_min
        if query.severity_max is not None:
            severity["lte"] = query.severity_max
        if severity:
            filters.append({"range": {"severity": severity}})
        if query.alerts is not None:
            filters.append({"terms": {"alert": list(query.alerts)}})
        must_not: list[dict[str, Any]] = []
        if query.dismissed is not None:
            (filters if query.dismissed else must_not).append({"exists": {"field": "dismissed.at"}})
        body = {
            "query": {"bool": {"filter": filters, **({"must_not": must_not} if must_not else {})}},
            "sort": ([{"severity": {"order": "desc"}}] if query.order == "severity" else [])
            + [{"time": {"order": "desc"}}],
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
        items = tuple(_event(h["_source"], str(h.get("_id") or "")) for h in hits["hits"])
        return EventPage(items=items, total=int(total))

    def dismiss(self, event_id: str, dismissal: Dismissal) -> Event | None:
        """Copy a dismissal (first committed in SQL) into the event's document; a dismissed one keeps its first."""
        script = {
            "source": "if (ctx._source.dismissed == null) { ctx._source.dismissed = params.d } "
            "else { ctx.op = 'noop' }",
            "params": {"d": dismissal.to_json()},
        }
        try:
            self._client.update(
                index=self._index,
                id=event_id,
                body={"script": script},
                refresh="wait_for",
                request_timeout=self._timeout,
            )
            found = self._client.get(index=self._index, id=event_id, request_timeout=self._timeout)
        except Exception as exc:
            if getattr(exc, "status_code", None) == 404:
                return None
            raise StoreError(f"OpenSearch event index {self._index}: dismiss {event_id} failed: {exc}") from exc
        return _event(found["_source"], event_id)


def _event(source: dict[str, Any], event_id: str) -> Event:
    dismissed = source.get("dismissed")
    return Event(
        time=_time(source["time"]),
        alert=str(source["alert"]),
        description=str(source["description"]),
        summary=str(source.get("summary") or source["description"]),
        severity=int(source["severity"]),
        record=source.get("record") or {},
        type=str(source.get("type") or "global_alert"),
        id=event_id,
        dismissed=Dismissal(str(dismissed.get("by") or ""), _time(dismissed["at"])) if dismissed else None,
    )


def _time(value: object) -> datetime:
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
