"""Evaluating a validated query tree against one log record in Python.

The reference semantics that the OpenSearch DSL and the SQL store implement: a selector holds when
any value of the key satisfies it (a missing key has no values); ``!=`` and ``NOTIN`` are the negation
of ``=`` and ``IN``; IPs compare by network membership; set members with ``*``/``?`` are wildcards.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from evaluator.query.ast import And, Comparator, Expr, Member, Not, Scalar, Selector, SetSelector
from evaluator.query.patterns import matches_pattern
from evaluator.query.records import Stored, stored_values
from evaluator.query.schema import FieldSpec, FieldType, field
from evaluator.query.values import to_date, to_network

_ORDER: dict[Comparator, Callable[[Any, Any], bool]] = {
    Comparator.LT: lambda a, b: a < b,
    Comparator.LE: lambda a, b: a <= b,
    Comparator.GT: lambda a, b: a > b,
    Comparator.GE: lambda a, b: a >= b,
}


def matches(expr: Expr | None, dataset: str, record: Mapping[str, Any]) -> bool:
    """Whether ``record`` is selected by the validated ``expr`` (None selects everything)."""
    if expr is None:
        return True
    return _Evaluator(dataset, record).expr(expr)


class _Evaluator:
    def __init__(self, dataset: str, record: Mapping[str, Any]) -> None:
        self.dataset = dataset
        self.record = record

    def values(self, spec: FieldSpec) -> list[Stored]:
        try:
            return stored_values(spec, self.record)
        except ValueError:
            return []

    def expr(self, node: Expr) -> bool:
        if isinstance(node, Selector):
            spec = field(self.dataset, node.key)
            values = self.values(spec)
            if node.op.is_range:
                target = _comparable(spec, node.value)
                return any(_ORDER[node.op](value, target) for value in values)
            found = any(_equal(spec, value, node.value) for value in values)
            return found if node.op is Comparator.EQ else not found
        if isinstance(node, SetSelector):
            spec = field(self.dataset, node.key)
            values = self.values(spec)
            found = any(_member(spec, value, member) for value in values for member in node.members)
            return not found if node.negated else found
        if isinstance(node, Not):
            return not self.expr(node.operand)
        if isinstance(node, And):
            return all(self.expr(operand) for operand in node.operands)
        return any(self.expr(operand) for operand in node.operands)


def _comparable(spec: FieldSpec, value: Scalar) -> Any:
    if spec.type is FieldType.DATE:
        return to_date(value).timestamp()
    return value


def _equal(spec: FieldSpec, stored: Stored, value: Scalar) -> bool:
    if spec.type is FieldType.IP:
        network = to_network(value)
        return isinstance(stored, ipaddress.IPv4Address | ipaddress.IPv6Address) and (
            stored.version == network.version and stored in network
        )
    return bool(stored == _comparable(spec, value))


def _member(spec: FieldSpec, stored: Stored, member: Member) -> bool:
    if member.pattern:
        return matches_pattern(str(stored), str(member.value))
    return _equal(spec, stored, member.value)
