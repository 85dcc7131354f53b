"""Bulk ingest of NDJSON log records into the embedded store: each bad line is reported, good lines kept."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from evaluator.logstore import RecordInvalid, insert_records, record_to_rows

# Elasticsearch bulk action lines ({"index": {...}}) are accepted and skipped, so a Calico-style bulk
# file can be replayed as is.
_ACTIONS = ("index", "create")
BATCH = 1_000


@dataclass(frozen=True, slots=True)
class LineError:
    line: int  # 1-based
    field: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass
class IngestResult:
    dataset: str
    lines: int = 0
    ingested: int = 0
    errors: list[LineError] = field(default_factory=list)

    def to_json(self, *, max_errors: int = 100) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "lines": self.lines,
            "ingested": self.ingested,
            "failed": len(self.errors),
            "errors": [e.to_json() for e in self.errors[:max_errors]],
        }


def parse_lines(dataset: str, lines: Iterable[str], result: IngestResult) -> list[dict[str, Any]]:
    """The valid records of ``lines``; every invalid one becomes a LineError in ``result``."""
    good: list[dict[str, Any]] = []
    for number, text in enumerate(lines, start=result.lines + 1):
        result.lines = number
        text = text.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            result.errors.append(LineError(number, "", f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        except RecursionError:
            result.errors.append(LineError(number, "", "JSON nested too deeply to be a log record"))
            continue
        except ValueError as exc:  # an integer literal over CPython's 4,300-digit limit
            result.errors.append(LineError(number, "", f"not a log record: {exc}"))
            continue
        if isinstance(record, dict) and len(record) == 1 and next(iter(record)) in _ACTIONS:
            continue
        try:
            record_to_rows(dataset, record)
        except RecordInvalid as exc:
            result.errors.append(LineError(number, exc.field, exc.reason))
            continue
        except RecursionError:
            result.errors.append(LineError(number, "", "JSON nested too deeply to be a log record"))
            continue
        good.append(record)
    return good


def ingest_text(engine: sa.Engine, dataset: str, text: str) -> IngestResult:
    result = IngestResult(dataset=dataset)
    lines = text.splitlines()
    for start in range(0, len(lines), BATCH):
        good = parse_lines(dataset, lines[start : start + BATCH], result)
        if good:
            with engine.begin() as conn:
                result.ingested += insert_records(conn, dataset, good)
    result.lines = len(lines)
    return result
