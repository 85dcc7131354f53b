"""Fixtures of the API tests: a migrated database (SQLite file, or a fresh real PostgreSQL database) and
an app/client over it with its own Prometheus registry and no background services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.db import make_engine, migrate
from tests.api.support import make_client


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'policywatch.db'}"
    migrate(url)
    return url


@pytest.fixture
def sqlite_client(sqlite_url: str) -> Iterator[TestClient]:
    with make_client(sqlite_url) as test_client:
        yield test_client


@pytest.fixture
def engine_for(db_url: str) -> Iterator[object]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
