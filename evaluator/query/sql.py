"""SQL (SQLAlchemy Core) for a validated query tree, over the embedded log store's tables.

Semantics match ``evaluate.matches`` on SQLite and PostgreSQL alike: every leaf is two-valued (a
missing value is "no match", never NULL), so NOT, ``!=`` and ``NOTIN`` select records lacking the key;
multi-valued keys match when any value does (``EXISTS`` over the values table); a CIDR is a range of
fixed-width address keys; wildcards compile to ``GLOB`` on SQLite (case-sensitive, like
PostgreSQL's ``LIKE``, which gets the escaped pattern there).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Boolean, ColumnElement, and_, exists, false, literal, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

import evaluator.logstore.tables as tables
from evaluator.query.ast import And, Comparator, Expr, Member, Not, Scalar, Selector, SetSelector, depth
from evaluator.query.errors import QueryError
from evaluator.query.parser import MAX_DEPTH
from evaluator.query.schema import TIME_FIELD, FieldSpec, FieldType, check_dataset, field
from evaluator.query.values import to_date, to_network

Condition = ColumnElement[bool]


class WildcardMatch(ColumnElement[bool]):
    """``column`` matches ``pattern`` where ``*`` is any run and ``?`` one character, case-sensitively."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, column: ColumnElement[Any], pattern: str) -> None:
        self.column = column
        self.pattern = pattern


@compiles(WildcardMatch, "sqlite")
def _glob(element: WildcardMatch, compiler: SQLCompiler, **kw: Any) -> str:
    # In GLOB only * ? and [ are special; [ is written as the one-character class [[].
    pattern = element.pattern.replace("[", "[[]")
    return f"({compiler.process(element.column, **kw)} GLOB {compiler.process(literal(pattern), **kw)})"


@compiles(WildcardMatch)
def _like(element: WildcardMatch, compiler: SQLCompiler, **kw: Any) -> str:
    escaped = element.pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = escaped.replace("*", "%").replace("?", "_")
    column = compiler.process(element.column, **kw)
    return f"({column} LIKE {compiler.process(literal(pattern), **kw)} ESCAPE '\\')"


def to_sql(expr: Expr | None, dataset: str) -> Condition:
    """A WHERE condition over ``table_for(dataset)`` selecting what ``expr`` selects."""
    check_dataset(dataset)
    if expr is None:
        return true()
    if depth(expr) > MAX_DEPTH:
        raise QueryError(f"query nests NOT and parentheses more than {MAX_DEPTH} levels deep")
    return _Compiler(dataset).expr(expr)


def time_range(dataset: str, *, start: datetime | None, end: datetime | None) -> Condition:
    """The data set's time column within [start, end)."""
    column = tables.column_for(dataset, TIME_FIELD[check_dataset(dataset)])
    conditions: list[Condition] = []
    if start is not None:
        conditions.append(column >= start.timestamp())
    if end is not None:
        conditions.append(column < end.timestamp())
    return and_(true(), *conditions)


class _Compiler:
    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.main = tables.table_for(dataset)
        self.values = tables.values_table_for(dataset)

    def expr(self, node: Expr) -> Condition:
        if isinstance(node, Selector):
            return self.selector(node)
        if isinstance(node, SetSelector):
            return self.set_selector(node)
        if isinstance(node, Not):
            return not_(self.expr(node.operand))
        if isinstance(node, And):
            return balanced(and_, [self.expr(operand) for operand in node.operands])
        return balanced(or_, [self.expr(operand) for operand in node.operands])

    def selector(self, node: Selector) -> Condition:
        spec = field(self.dataset, node.key, position=node.key_position)
        if node.op.is_range:
            column = tables.column_for(self.dataset, spec.key)
            target = _comparable(spec, node.value)
            compare = {
                Comparator.LT: column < target,
                Comparator.LE: column <= target,
                Comparator.GT: column > target,
                Comparator.GE: column >= target,
            }[node.op]
            return and_(column.is_not(None), compare)
        positive = self.any_value(spec, lambda value, ipkey: _equal(spec, value, ipkey, node.value))
        return not_(positive) if node.op is Comparator.NE else positive

    def set_selector(self, node: SetSelector) -> Condition:
        spec = field(self.dataset, node.key, position=node.key_position)
        positive = self.any_value(
            spec,
            lambda value, ipkey: _members(spec, value, ipkey, node.members),
        )
        return not_(positive) if node.negated else positive

    def any_value(self, spec: FieldSpec, test: Any) -> Condition:
        """``test(value_column, ipkey_column)`` holds for some value of the key (never NULL)."""
        if spec.multi_valued or spec.dynamic:
            values = self.values
            return exists(
                select(values.c.id).where(
                    values.c.record_id == self.main.c.id,
                    values.c.key == spec.key,
                    test(values.c.value, values.c.ip_key),
                )
            ).correlate(self.main)
        column = tables.column_for(self.dataset, spec.key)
        ipkey = tables.ip_key_column_for(self.dataset, spec.key) if spec.type is FieldType.IP else None
        return and_(column.is_not(None), test(column, ipkey))


CHAIN = 256


class Parenthesized(ColumnElement[bool]):
    """``(clause)``, opaque to SQLAlchemy so that it is never flattened into an enclosing chain."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, clause: Condition) -> None:
        self.clause = clause


@compiles(Parenthesized)
def _parenthesized(element: Parenthesized, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clause, **kw)})"


def balanced(combine: Any, clauses: list[Condition]) -> Condition:
    """``combine`` (and_/or_) of ``clauses``, as chains of at most ``CHAIN`` operands.

    SQLite refuses expressions more than 1000 levels deep, and a chain of n operands is n levels deep
    there; chains of parenthesised chains stay shallow without nesting parentheses deeply (SQLite's
    parser also has a small stack)."""
    while len(clauses) > CHAIN:
        clauses = [
            Parenthesized(cast(Condition, combine(*clauses[start : start + CHAIN])))
            for start in range(0, len(clauses), CHAIN)
        ]
    return cast(Condition, combine(*clauses))


def _members(spec: FieldSpec, column: Any, ipkey: Any, members: tuple[Member, ...]) -> Condition:
    exact = [member for member in members if not member.pattern]
    clauses: list[Condition] = []
    if spec.type is FieldType.IP:
        clauses.extend(_equal(spec, column, ipkey, member.value) for member in exact)
    elif exact:
        as_text = spec.multi_valued or spec.dynamic
        values = [str(_comparable(spec, m.value)) if as_text else _comparable(spec, m.value) for m in exact]
        clauses.append(cast(Condition, column.in_(values)))
    clauses.extend(WildcardMatch(column, str(member.value)) for member in members if member.pattern)
    return balanced(or_, clauses)


def _comparable(spec: FieldSpec, value: Scalar) -> Any:
    if spec.type is FieldType.DATE:
        return to_date(value).timestamp()
    return value


def _equal(spec: FieldSpec, column: Any, ipkey: Any, value: Scalar) -> Condition:
    if spec.type is FieldType.IP:
        low, high = tables.network_bounds(to_network(value))
        if ipkey is None:
            return false()
        return cast(Condition, ipkey == low if low == high else ipkey.between(low, high))
    comparable = _comparable(spec, value)
    if spec.multi_valued or spec.dynamic:
        comparable = str(comparable)
    return cast(Condition, column == comparable)
