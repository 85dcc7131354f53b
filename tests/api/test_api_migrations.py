"""Alembic: up from empty to head, models and migrations agree (``alembic check``), and back down to
empty, on SQLite and PostgreSQL; the repository's alembic.ini works from the command line too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from api.db import alembic_config, make_engine, migrate
from tests.conftest import REPO_ROOT

OWN_TABLES = {"global_alerts", "global_alert_templates", "global_alert_status"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return str(request.getfixturevalue("pg_database"))


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_revision_chain_starts_with_0001_initial() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    base = script.get_revision("0001_initial")
    assert base is not None and base.down_revision is None
    chain = [r.revision for r in script.walk_revisions()][::-1]
    assert chain[0] == "0001_initial"


def test_up_check_down(empty_url: str) -> None:
    config = alembic_config(empty_url)
    command.upgrade(config, "0001_initial")
    assert tables(empty_url) == OWN_TABLES
    command.upgrade(config, "head")
    assert OWN_TABLES <= tables(empty_url)
    command.check(config)  # raises if the models and the migrations differ
    engine = make_engine(empty_url)
    try:
        # The naming convention gives stable constraint names on both databases.
        fks = inspect(engine).get_foreign_keys("global_alert_status")
        assert [fk["name"] for fk in fks] == ["fk_global_alert_status_name_global_alerts"]
        uniques = inspect(engine).get_unique_constraints("global_alerts")
        assert [u["name"] for u in uniques] == ["uq_global_alerts_uid"]
    finally:
        engine.dispose()
    command.downgrade(config, "0001_initial")
    assert tables(empty_url) == OWN_TABLES
    command.downgrade(config, "base")
    assert tables(empty_url) == set()
    command.upgrade(config, "head")  # and up again from empty
    command.check(config)


def test_alembic_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "POLICYWATCH_DATABASE_URL": url}
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini")]
    for args in (["upgrade", "head"], ["check"], ["downgrade", "base"]):
        result = subprocess.run([*alembic, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert tables(url) == set()


@pytest.mark.postgres
def test_concurrent_migrations_on_postgres(pg_database: str) -> None:
    """Evaluators starting together: the advisory lock lets one migrate; the others find it done."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(pg_database)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert OWN_TABLES <= tables(pg_database)
    command.check(alembic_config(pg_database))


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    migrate(url)
    migrate(url)
    assert OWN_TABLES <= tables(url)
