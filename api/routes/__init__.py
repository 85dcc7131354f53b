"""Routers of the evaluator's HTTP API; api/app.py lists them in one place."""
