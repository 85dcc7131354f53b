"""Fixtures of the ingest tests: the app over a migrated SQLite or PostgreSQL database, and real log lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.db import make_engine, migrate
from tests.api.support import EvaluatorProcess, make_client


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database: SQLite, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'policywatch.db'}"
    else:
        url = str(request.getfixturevalue("pg_database"))
    migrate(url)
    return url


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url) as test_client:
        yield test_client


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    made = make_engine(db_url)
    yield made
    made.dispose()


@pytest.fixture
def evaluator(tmp_path: Path) -> Iterator[EvaluatorProcess]:
    """``policywatch-evaluator`` in a subprocess on a free port (database ``tmp_path/server.db``); stopped after."""
    process = EvaluatorProcess(tmp_path)
    try:
        yield process
    finally:
        process.stop()
