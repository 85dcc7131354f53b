"""Alert instances: per (alert, aggregation key) an instance fires while the condition holds.

``track`` is pure: given one run's findings and what was firing (and which hits were already reported), it
says which events to write, which instances start, continue and resolve. The scheduler applies that to SQL
(``state.py``); the dry run applies it to an in-memory ``MemoryState``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from evaluator.engine.model import Finding, RunResult
from evaluator.events import Event


@dataclass(frozen=True, slots=True)
class Instance:
    """A firing alert instance: what it reported when it started and when that was."""

    alert: str
    key: str
    record: Mapping[str, object]
    description: str
    started: datetime
    severity: int
    value: float | None = None
    summary: str = ""  # for the event written when it starts; not kept in alert_instances

    @property
    def aggregate_by(self) -> tuple[str, ...]:
        """The aggregation fields, read back from the key (canonical JSON of their values)."""
        if not self.key.startswith("{"):
            return ()
        return tuple(json.loads(self.key))


@dataclass(frozen=True, slots=True)
class Transitions:
    at: datetime
    events: tuple[Event, ...]
    started: tuple[Instance, ...]
    continuing: tuple[Finding, ...]
    resolved: tuple[Instance, ...]
    new_hits: tuple[Finding, ...]


def track(
    *,
    alert: str,
    severity: int,
    at: datetime,
    result: RunResult,
    firing: Mapping[str, Instance],
    seen_hits: Collection[str],
) -> Transitions:
    """Events for instances that start firing at ``at`` (or hits not reported before); the rest resolve.

    A per-hit alert has no instances: each log record is reported once, however many overlapping windows
    see it (``seen_hits`` holds the keys already reported).
    """
    if result.per_hit:
        new_hits = tuple(f for f in result.findings if f.key not in seen_hits)
        events = tuple(_event(alert, severity, at, f) for f in new_hits)
        return Transitions(at, events, (), (), tuple(firing.values()), new_hits)
    started: list[Instance] = []
    continuing: list[Finding] = []
    present: set[str] = set()
    for finding in result.findings:
        present.add(finding.key)
        if finding.key in firing:
            continuing.append(finding)
        else:
            started.append(
                Instance(
                    alert=alert,
                    key=finding.key,
                    record=finding.record,
                    description=finding.description,
                    started=at,
                    severity=severity,
                    value=finding.value,
                    summary=finding.summary,
                )
            )
    resolved = tuple(inst for key, inst in firing.items() if key not in present)
    events = tuple(
        Event(
            time=at,
            alert=alert,
            description=inst.description,
            severity=severity,
            record=inst.record,
            key=inst.key,
            summary=inst.summary or inst.description,
        )
        for inst in started
    )
    return Transitions(at, events, tuple(started), tuple(continuing), resolved, ())


def _event(alert: str, severity: int, at: datetime, finding: Finding) -> Event:
    return Event(
        time=at,
        alert=alert,
        description=finding.description,
        severity=severity,
        record=finding.record,
        key=finding.key,
        summary=finding.summary or finding.description,
    )


@dataclass
class MemoryState:
    """Instances and reported hits of one alert, in memory (the dry run's replay)."""

    firing: dict[str, Instance] = field(default_factory=dict)
    seen_hits: dict[str, datetime] = field(default_factory=dict)

    def apply(self, transitions: Transitions, *, lookback: timedelta) -> None:
        for inst in transitions.resolved:
            self.firing.pop(inst.key, None)
        for inst in transitions.started:
            self.firing[inst.key] = inst
        for hit in transitions.new_hits:
            self.seen_hits[hit.key] = hit.hit_time or transitions.at
        horizon = transitions.at - lookback
        for key in [k for k, t in self.seen_hits.items() if t <= horizon]:
            del self.seen_hits[key]
