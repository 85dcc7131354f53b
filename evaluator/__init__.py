"""GlobalAlert engine: query language, log and event stores, alert execution, scheduler.

Imports no web framework: the HTTP layer lives in `api`, which imports this package (never the reverse).
"""
