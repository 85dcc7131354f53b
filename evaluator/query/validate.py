"""``validate``: check every key and value of a tree against a data set's schema, normalising values."""

from __future__ import annotations

import difflib
import re

from evaluator.query.ast import And, Expr, Member, Not, Or, Scalar, Selector, SetSelector, depth
from evaluator.query.errors import QueryError
from evaluator.query.parser import MAX_DEPTH, parse
from evaluator.query.patterns import matches_pattern
from evaluator.query.schema import FieldSpec, FieldType, check_dataset, field
from evaluator.query.values import normalise

PLACEHOLDER = re.compile(r"<[^<>]*>")
# OpenSearch refuses more clauses than this by default (indices.query.bool.max_clause_count); the same
# bound keeps the SQL store's expressions small.
MAX_TERMS = 1024
_NO_WILDCARDS = (FieldType.INT, FieldType.IP, FieldType.DATE)


def validate(expr: Expr | None, dataset: str, *, placeholders: bool = False) -> Expr | None:
    """``expr`` with every value in canonical form; raises QueryError naming the key and position.

    ``placeholders`` lets a GlobalAlertTemplate keep ``<...>`` values (such as ``"<desired namespace>"``)
    for any key; a GlobalAlert may not.
    """
    check_dataset(dataset)
    if expr is None:
        return None
    if depth(expr) > MAX_DEPTH:
        raise QueryError(f"query nests NOT and parentheses more than {MAX_DEPTH} levels deep")
    return _Validator(dataset, placeholders).expr(expr)


def compile_query(text: str, dataset: str, *, placeholders: bool = False) -> Expr | None:
    """Parse and validate ``text`` for ``dataset``; errors carry the query text and position."""
    try:
        return validate(parse(text), dataset, placeholders=placeholders)
    except QueryError as error:
        raise error.with_query(text) from None


class _Validator:
    def __init__(self, dataset: str, placeholders: bool) -> None:
        self.dataset = dataset
        self.placeholders = placeholders
        self.terms = 0

    def count(self, terms: int, position: int | None) -> None:
        self.terms += terms
        if self.terms > MAX_TERMS:
            raise QueryError(
                f"query has more than {MAX_TERMS} selectors and set members",
                position=position,
                expected=(f"at most {MAX_TERMS}",),
            )

    def expr(self, node: Expr) -> Expr:
        if isinstance(node, Selector):
            return self.selector(node)
        if isinstance(node, SetSelector):
            return self.set_selector(node)
        # Nodes whose parts come back unchanged are reused: trees are immutable, and this is most of them.
        if isinstance(node, Not):
            operand = self.expr(node.operand)
            return node if operand is node.operand else Not(operand, position=node.position)
        operands = tuple(self.expr(operand) for operand in node.operands)
        if all(new is old for new, old in zip(operands, node.operands, strict=True)):
            return node
        return And(operands) if isinstance(node, And) else Or(operands)

    def selector(self, node: Selector) -> Selector:
        self.count(1, node.key_position)
        spec = field(self.dataset, node.key, position=node.key_position)
        if node.op.is_range and not spec.ordered:
            raise QueryError(
                f"comparator {node.op.value} does not apply to key {node.key!r} of type {spec.type.value}; "
                "only numbers and dates are ordered",
                position=node.key_position,
                expected=("=", "!=", "IN", "NOTIN"),
            )
        value = self.value(spec, node.value, node.value_position, pattern=False)
        if type(value) is type(node.value) and value == node.value:
            return node
        return Selector(node.key, node.op, value, key_position=node.key_position, value_position=node.value_position)

    def set_selector(self, node: SetSelector) -> SetSelector:
        spec = field(self.dataset, node.key, position=node.key_position)
        members: dict[Scalar, Member] = {}
        for member in node.members:
            self.count(1, member.position)
            for value in self.member_values(spec, member):
                members.setdefault(value, Member(value, position=member.position))
        return SetSelector(node.key, tuple(members.values()), node.negated, key_position=node.key_position)

    def member_values(self, spec: FieldSpec, member: Member) -> list[Scalar]:
        if not member.pattern:
            return [self.value(spec, member.value, member.position, pattern=False)]
        if spec.type in _NO_WILDCARDS:
            raise QueryError(
                f"wildcards do not apply to key {spec.key!r} of type {spec.type.value}",
                position=member.position,
                expected=("a value without * or ?",),
            )
        if spec.allowed:
            # An enumeration's pattern becomes the values it matches, so every backend agrees.
            text = str(member.value).lower()
            chosen = [option for option in spec.allowed if matches_pattern(option.lower(), text)]
            if not chosen:
                raise QueryError(
                    f"pattern {member.value!r} matches none of the values of key {spec.key!r}",
                    position=member.position,
                    expected=spec.allowed,
                )
            return list(chosen)
        return [self.value(spec, member.value, member.position, pattern=True)]

    def value(self, spec: FieldSpec, value: Scalar, position: int | None, *, pattern: bool) -> Scalar:
        if self.placeholders and isinstance(value, str) and PLACEHOLDER.fullmatch(value):
            return value
        try:
            return normalise(spec, value, pattern=pattern)
        except ValueError as error:
            suggestion = None
            if spec.allowed:
                close = difflib.get_close_matches(str(value).lower(), [a.lower() for a in spec.allowed], n=1)
                suggestion = next((a for a in spec.allowed if close and a.lower() == close[0]), None)
            raise QueryError(
                f"invalid value for key {spec.key!r} ({spec.type.value}): {error}",
                position=position,
                expected=spec.allowed or (spec.type.value,),
                suggestion=suggestion,
            ) from None
