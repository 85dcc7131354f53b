"""``unparse``: syntax tree back to query text, such that ``parse(unparse(tree)) == tree``."""

from __future__ import annotations

import math
import re
import unicodedata

from evaluator.query.ast import And, Expr, Member, Not, Or, Scalar, Selector, SetSelector
from evaluator.query.lexer import KEYWORDS

# Narrower than what the lexer reads bare (it also takes ``-``): the canonical text quotes such words, as the
# spec's grammar has them, so that it reads the same in Calico's own parser.
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_BARE_PATTERN = re.compile(r"[A-Za-z0-9_.]*[*?][A-Za-z0-9_.*?]*")
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def unparse(expr: Expr | None) -> str:
    """Canonical text of ``expr``: upper-case keywords, double quotes where a bare word would not do."""
    if expr is None:
        return ""
    # Explicit stack of text pieces and nodes still to render, so deep trees cannot overflow.
    out: list[str] = []
    work: list[Expr | str] = [expr]
    while work:
        item = work.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Selector):
            out.append(f"{_key(item.key)} {item.op.value} {_value(item.value)}")
        elif isinstance(item, SetSelector):
            members = ", ".join(_member(member) for member in item.members)
            out.append(f"{_key(item.key)} {'NOTIN' if item.negated else 'IN'} {{{members}}}")
        elif isinstance(item, Not):
            wrap = isinstance(item.operand, And | Or)
            work.extend([")" if wrap else "", item.operand, "NOT (" if wrap else "NOT "])
        else:
            joiner = " AND " if isinstance(item, And) else " OR "
            pieces: list[Expr | str] = []
            for index, operand in enumerate(item.operands):
                if index:
                    pieces.append(joiner)
                wrap = isinstance(operand, Or) or (isinstance(item, And) and isinstance(operand, And))
                pieces.extend(["(", operand, ")"] if wrap else [operand])
            work.extend(reversed(pieces))
    return "".join(out)


def quote(text: str) -> str:
    return '"' + "".join(_QUOTE_ESCAPES.get(char) or _visible(char) for char in text) + '"'


def _visible(char: str) -> str:
    # Controls, format characters, separators and unassigned code points are written as escapes so
    # that the text shows what it holds.
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _key(key: str) -> str:
    return key if _is_bare(key) else quote(key)


def _is_bare(text: str) -> bool:
    return _BARE.fullmatch(text) is not None and text.lower() not in KEYWORDS


def _value(value: Scalar) -> str:
    if isinstance(value, bool):
        raise TypeError("boolean values are not part of the query language")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite number {value} in a query")
        text = repr(value)
        return text if "e" in text or "." in text else f"{text}.0"
    return value if _is_bare(value) else quote(value)


def _member(member: Member) -> str:
    value = member.value
    if isinstance(value, str) and _BARE_PATTERN.fullmatch(value) and not _BARE.fullmatch(value):
        return value
    return _value(value)
