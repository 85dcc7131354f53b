"""The immutable syntax tree of a query.

Positions are kept for error messages but take no part in equality, so that a tree parsed from
``unparse(tree)`` equals ``tree``. ``And``/``Or`` hold two or more operands: a chain ``a AND b AND c``
is one ``And``; a parenthesised group stays a nested node, so the tree mirrors the text exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

Scalar = str | int | float


class Comparator(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    @property
    def is_range(self) -> bool:
        return self in _RANGES


_RANGES = frozenset({Comparator.LT, Comparator.LE, Comparator.GT, Comparator.GE})


@dataclass(frozen=True, slots=True)
class Selector:
    """``key comparator value``."""

    depth: ClassVar[int] = 1

    key: str
    op: Comparator
    value: Scalar
    key_position: int | None = field(default=None, compare=False, repr=False)
    value_position: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a set; ``pattern`` when it holds ``*`` or ``?`` wildcards."""

    value: Scalar
    position: int | None = field(default=None, compare=False, repr=False)

    @property
    def pattern(self) -> bool:
        return isinstance(self.value, str) and ("*" in self.value or "?" in self.value)


@dataclass(frozen=True, slots=True)
class SetSelector:
    """``key IN {a, b*}`` or, with ``negated``, ``key NOTIN {...}``."""

    depth: ClassVar[int] = 1

    key: str
    members: tuple[Member, ...]
    negated: bool = False
    key_position: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    position: int | None = field(default=None, compare=False, repr=False)
    # Nesting depth, computed once from the children's (so checking it never recurses).
    depth: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", self.operand.depth + 1)


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]
    depth: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", max(operand.depth for operand in self.operands) + 1)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]
    depth: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", max(operand.depth for operand in self.operands) + 1)


Expr = Selector | SetSelector | Not | And | Or


def walk(expr: Expr) -> list[Expr]:
    """Every node, parents before children, without recursion (trees may be deep)."""
    out: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, Not):
            stack.append(node.operand)
        elif isinstance(node, And | Or):
            stack.extend(reversed(node.operands))
    return out


def depth(expr: Expr) -> int:
    """Nesting depth of boolean operators (a lone selector is 1); kept on each node, so O(1)."""
    return expr.depth
