"""Fixtures of the ingest tests (``db_url``, ``client`` and ``evaluator`` come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from api.db import make_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    made = make_engine(db_url)
    yield made
    made.dispose()
