"""The one-command local demo of policywatch (``scripts/demo``, ``python -m demo``).

Runs from the repository: it reuses the test suite's process and namespace helpers (tests/fixtures) and the very
rule and dashboard files the Helm chart ships.
"""
