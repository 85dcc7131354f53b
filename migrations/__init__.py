"""Alembic migrations of the evaluator's database."""
