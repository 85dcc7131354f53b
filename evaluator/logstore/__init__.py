"""The embedded log store: flows, dns and audit records in SQL tables (SQLite or PostgreSQL)."""

from evaluator.logstore.tables import (
    RecordInvalid,
    column_for,
    record_to_rows,
    table_for,
    values_table_for,
)
from evaluator.logstore.writer import Keyed, Outcome, insert_records, insert_rows, write_keyed

__all__ = [
    "Keyed",
    "Outcome",
    "RecordInvalid",
    "column_for",
    "insert_records",
    "insert_rows",
    "record_to_rows",
    "table_for",
    "values_table_for",
    "write_keyed",
]
