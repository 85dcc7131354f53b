"""The log store plug point: what one alert run asks of the embedded SQL store or OpenSearch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from evaluator.engine.model import Bucket, Hit, Window


class LogStore(Protocol):
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
        """Buckets of the rows in ``window`` matching ``query`` (a validated ``evaluator.query`` Expr or None).

        One bucket per distinct combination of ``aggregate_by`` values (a row with several values of a
        multi-valued field counts in each of their buckets, as Elasticsearch's terms/composite do); with an
        empty ``aggregate_by`` exactly one bucket, ``key == ()``, even over no rows. ``metric`` (one of
        ``vocabulary.METRICS``) over ``field`` gives ``Bucket.value`` (None for min/max/avg of no values).
        Pages through the store and stops after ``limit`` buckets. Raises ``StoreError`` when the store cannot answer.
        """
        ...

    def hits(self, *, dataset: str, query: Any, window: Window, limit: int) -> Iterator[Hit]:
        """The matching rows in ``window``, oldest first, at most ``limit``; raises ``StoreError``."""
        ...
