"""Migration 0003_engine: models and migrations agree (``alembic check``), and it downgrades and re-applies."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from api.db import alembic_config, migrate

ENGINE_TABLES = {"events", "alert_instances", "alert_seen_hits", "alert_schedule", "alert_runs"}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_upgrade_check_downgrade(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path}/m.db" if backend == "sqlite" else request.getfixturevalue("pg_database")
    migrate(url)
    command.check(alembic_config(url))  # raises when models and migrations differ
    engine = sa.create_engine(url)
    try:
        assert ENGINE_TABLES <= set(sa.inspect(engine).get_table_names())
        command.downgrade(alembic_config(url), "0002_logstore")
        assert not ENGINE_TABLES & set(sa.inspect(engine).get_table_names())
        migrate(url)
        assert ENGINE_TABLES <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
