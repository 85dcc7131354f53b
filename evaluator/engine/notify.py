"""Notifications of firing and resolved alert instances to Alertmanager (API v2 ``POST /api/v2/alerts``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from evaluator.engine.instances import Instance, Transitions
from evaluator.engine.template import format_value
from evaluator.events import rfc3339

_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True, slots=True)
class Notification:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    resolved: bool = False  # a resolution is sent once (kept for retry); firing ones are re-sent every run

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at),
        }


class NotifyError(Exception):
    pass


class Notifier(Protocol):
    def send(self, notifications: Sequence[Notification]) -> None:
        """Deliver or raise ``NotifyError``; the scheduler re-sends firing instances every run."""
        ...


def label_name(field: str) -> str:
    """A Prometheus label name for a data-set key: ``servers.name`` -> ``servers_name``."""
    name = _LABEL_NAME.sub("_", field)
    return f"_{name}" if name[:1].isdigit() else name


def labels_for(alert: str, severity: int, record: Mapping[str, Any], aggregate_by: Sequence[str]) -> dict[str, str]:
    labels = {"alertname": alert, "severity": str(severity)}
    for field in aggregate_by:
        labels[label_name(field)] = format_value(record.get(field))
    return labels


def notifications_for(
    *,
    alert: str,
    severity: int,
    aggregate_by: Sequence[str],
    period: timedelta,
    transitions: Transitions,
    firing_before: Mapping[str, Instance],
) -> list[Notification]:
    """Firing instances (started or continuing) with ``endsAt`` three periods ahead, so Alertmanager
    resolves them itself if the evaluator goes away; resolved ones with ``endsAt`` = now; new hits once."""
    at = transitions.at
    expires = at + 3 * period
    out: list[Notification] = []
    for inst in transitions.started:
        out.append(_one(alert, severity, aggregate_by, inst.record, inst.description, inst.started, expires))
    for finding in transitions.continuing:
        started = firing_before[finding.key].started if finding.key in firing_before else at
        out.append(_one(alert, severity, aggregate_by, finding.record, finding.description, started, expires))
    out.extend(resolved_notifications(alert=alert, instances=transitions.resolved, at=at))
    for hit in transitions.new_hits:
        note = _one(alert, severity, (), hit.record, hit.description, at, at + period)
        out.append(
            Notification({**note.labels, "hit": hit.key.removeprefix("hit:")}, note.annotations, at, at + period)
        )
    return out


def resolved_notifications(*, alert: str, instances: Sequence[Instance], at: datetime) -> list[Notification]:
    """``endsAt`` = ``at``, with the labels the instance fired with (its severity and aggregation fields)."""
    return [
        replace(_one(alert, i.severity, i.aggregate_by, i.record, i.description, i.started, at), resolved=True)
        for i in instances
    ]


def _one(
    alert: str,
    severity: int,
    aggregate_by: Sequence[str],
    record: Mapping[str, Any],
    description: str,
    starts_at: datetime,
    ends_at: datetime,
) -> Notification:
    return Notification(
        labels=labels_for(alert, severity, record, aggregate_by),
        annotations={"description": description},
        starts_at=starts_at,
        ends_at=ends_at,
    )


class AlertmanagerNotifier:
    """Posts to Alertmanager's API v2. ``url`` is its base, e.g. ``http://alertmanager:9093``."""

    def __init__(self, url: str, *, timeout: float = 5.0, client: httpx.Client | None = None) -> None:
        self._endpoint = url.rstrip("/") + "/api/v2/alerts"
        self._client = client or httpx.Client(timeout=timeout)

    def send(self, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return
        try:
            response = self._client.post(self._endpoint, json=[n.to_json() for n in notifications])
        except httpx.HTTPError as exc:
            raise NotifyError(f"Alertmanager at {self._endpoint} unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise NotifyError(
                f"Alertmanager at {self._endpoint} answered {response.status_code}: {response.text[:300]}"
            )

    def close(self) -> None:
        self._client.close()
