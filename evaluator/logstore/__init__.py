"""The embedded log store: flows, dns and audit records in SQL tables (SQLite or PostgreSQL)."""

from evaluator.logstore.tables import (
    RecordInvalid,
    column_for,
    insert_records,
    record_to_rows,
    table_for,
    values_table_for,
)

__all__ = ["RecordInvalid", "column_for", "insert_records", "record_to_rows", "table_for", "values_table_for"]
