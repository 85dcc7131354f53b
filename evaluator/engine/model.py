"""Values passed between the log stores, the execution function and the instance tracker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class Window:
    """The half-open time range ``(start, end]`` one run looks at."""

    start: datetime
    end: datetime

    @classmethod
    def ending_at(cls, end: datetime, lookback: timedelta) -> Window:
        return cls(start=end - lookback, end=end)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One aggregation pattern: its key values (None where the field is missing), rows and metric value."""

    key: tuple[Any, ...]
    doc_count: int
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """One log record: a store-wide stable id (for de-duplication), its time and the whole record."""

    id: str
    time: datetime
    record: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the alert reports for one window: an aggregation pattern that satisfies the condition or a hit.

    ``key`` names the alert instance: the canonical JSON of the aggregation values for aggregated alerts,
    ``""`` for a metric without aggregation and ``"hit:<id>"`` for a per-hit alert.
    """

    key: str
    record: Mapping[str, Any]
    description: str
    value: float | None = None
    hit_time: datetime | None = None
    summary: str = ""  # spec.summary filled in (spec.description's text when the spec has no summary)


@dataclass(frozen=True, slots=True)
class RunResult:
    window: Window
    findings: tuple[Finding, ...]
    per_hit: bool
    examined: int


class EngineError(Exception):
    """An alert run failed; the message is shown to the user in the alert's errorConditions."""


class StoreError(EngineError):
    """The log or event store could not answer (down, timed out, shard failures)."""


class BucketCapReached(EngineError):
    """More aggregation buckets (or hits) than the cap: reported, never silently truncated."""
