"""The GlobalAlert query language: parse, validate against a data set, compile to OpenSearch DSL or SQL.

``compile_query(text, dataset)`` is parse + validate; ``to_dsl``/``to_sql`` take the validated tree.
"""

from evaluator.query.ast import And, Comparator, Expr, Member, Not, Or, Selector, SetSelector
from evaluator.query.dsl import aggregation_request, search_body, to_dsl
from evaluator.query.errors import QueryError
from evaluator.query.evaluate import matches
from evaluator.query.parser import parse
from evaluator.query.schema import DATASETS, TIME_FIELD, FieldSpec
from evaluator.query.sql import to_sql
from evaluator.query.unparse import unparse
from evaluator.query.validate import compile_query, validate

__all__ = [
    "DATASETS",
    "TIME_FIELD",
    "And",
    "Comparator",
    "Expr",
    "FieldSpec",
    "Member",
    "Not",
    "Or",
    "QueryError",
    "Selector",
    "SetSelector",
    "aggregation_request",
    "compile_query",
    "matches",
    "parse",
    "search_body",
    "to_dsl",
    "to_sql",
    "unparse",
    "validate",
]
