"""The embedded log store: flows, dns and audit records in SQL tables (SQLite or PostgreSQL)."""

from evaluator.logstore.tables import (
    RecordInvalid,
    column_for,
    table_for,
    values_table_for,
)
from evaluator.logstore.writer import Keyed, Outcome, insert_flat, insert_records, write_keyed

__all__ = [
    "Keyed",
    "Outcome",
    "RecordInvalid",
    "column_for",
    "insert_flat",
    "insert_records",
    "table_for",
    "values_table_for",
    "write_keyed",
]
