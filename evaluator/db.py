"""The one SQLAlchemy ``MetaData`` of the evaluator's database.

Every table (alert objects and status in ``api``, the embedded log store and the event store in
``evaluator``) is declared on this metadata so that Alembic sees one schema and ``alembic check`` can
prove that models and migrations agree. The naming convention keeps constraint names stable across
SQLite and PostgreSQL.
"""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    """Declarative base for ORM models; shares ``metadata`` with the Core tables."""

    metadata = metadata
