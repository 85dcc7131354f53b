"""Alembic environment: one ``evaluator.db.metadata`` for every table of the evaluator's database.

Every module that declares tables is imported here, so that autogenerate and ``alembic check`` see the
whole schema. The URL comes from the caller (``config.attributes["url"]``), else ``POLICYWATCH_DATABASE_URL``, else
``sqlalchemy.url`` in alembic.ini; a caller may also hand over an open connection in
``config.attributes["connection"]``.
"""

from __future__ import annotations

import importlib
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, pool

from evaluator.db import metadata

# Every module that declares tables on ``evaluator.db.metadata`` (imported for that side effect).
MODEL_MODULES = (
    "api.models",
    "evaluator.logstore.tables",
    "evaluator.events",
    "evaluator.engine.tables",
)
for _module in MODEL_MODULES:
    importlib.import_module(_module)
config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = metadata


DEFAULT_URL = "sqlite:///./policywatch.db"


def _url() -> str:
    """The URL a caller passed (``api.db.migrate``), else the environment, else alembic.ini, else the
    evaluator's default."""
    url = config.attributes.get("url") or os.environ.get("POLICYWATCH_DATABASE_URL")
    return str(url or config.get_main_option("sqlalchemy.url") or DEFAULT_URL)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        return
    # Imported here: api.db imports this package's __init__, never this module.
    from api.db import make_engine

    engine = make_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
