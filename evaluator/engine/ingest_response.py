"""What an ingest request's documents became, as each endpoint answers it: a per-line report for
``/datasets/{d}/_bulk``, Elasticsearch's ``_bulk`` response for ``/_bulk``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evaluator.logstore import Outcome

if TYPE_CHECKING:
    from evaluator.engine.ingest import Document


@dataclass
class Report:
    """What became of a ``/datasets/{d}/_bulk`` request, line by line."""

    dataset: str
    lines: int = 0
    ingested: int = 0
    duplicates: int = 0
    errors: list[Document] = field(default_factory=list)
    documents: int = 0

    @classmethod
    def of(cls, dataset: str, body: bytes, documents: Sequence[Document]) -> Report:
        report = cls(dataset=dataset, lines=body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1))
        report.documents = len(documents)
        for document in documents:
            if document.error is not None:
                report.errors.append(document)
            elif document.outcome in (Outcome.CREATED, Outcome.UPDATED):
                report.ingested += 1
            elif document.outcome is Outcome.DUPLICATE:
                report.duplicates += 1
        return report

    @property
    def stored_nothing(self) -> bool:
        """Nothing of the request is in the store (neither written now nor before): a 4xx, never 2xx."""
        return self.ingested == 0 and self.duplicates == 0

    def to_json(self, *, max_errors: int = 100) -> dict[str, Any]:
        errors = []
        for document in self.errors[:max_errors]:
            assert document.error is not None
            entry: dict[str, Any] = {
                "line": document.line,
                "field": document.error.field,
                "reason": document.error.reason,
            }
            if document.item is not None:
                entry["item"] = document.item
            errors.append(entry)
        return {
            "dataset": self.dataset,
            "lines": self.lines,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "failed": len(self.errors),
            "errors": errors,
        }


_RESULT = {Outcome.CREATED: "created", Outcome.UPDATED: "updated"}
_SHARDS = {"total": 1, "successful": 1, "failed": 0}  # shared by every item: only serialised, never changed


def es_bulk_response(documents: Sequence[Document], started: float) -> dict[str, Any]:
    """Elasticsearch's ``_bulk`` response: ``took``, ``errors``, one item per action with its status."""
    items: list[dict[str, Any]] = []
    append = items.append
    created, updated = Outcome.CREATED, Outcome.UPDATED
    errors = False
    for sequence, document in enumerate(documents):
        error = document.error
        if error is not None:
            errors = True
            reason = error.reason
            if error.field:
                reason = f"failed to parse field [{error.field}]: {reason}"
            item: dict[str, Any] = {
                "_index": document.index,
                "_id": document.doc_id,
                "status": error.status,
                "error": {"type": error.type, "reason": reason, "index": document.index},
            }
        else:
            outcome = document.outcome
            item = {
                "_index": document.index,
                "_id": document.response_id,
                "_version": 2 if outcome is updated else 1,
                "result": _RESULT.get(outcome, "noop"),  # type: ignore[arg-type]
                "_shards": _SHARDS,
                "_seq_no": sequence,
                "_primary_term": 1,
                "status": 201 if outcome is created else 200,
            }
        append({document.action: item})
    return {"took": int((time.monotonic() - started) * 1000), "errors": errors, "items": items}
