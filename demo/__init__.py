"""The one-command local demo of policywatch (``scripts/demo``, ``python -m demo``).

Runs from the repository: it uses the distribution's process and namespace helpers (``devstack``) and the very
rule and dashboard files the Helm chart ships.
"""
