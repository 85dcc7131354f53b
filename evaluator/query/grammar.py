"""Grammar of the query language (PLY yacc), built once at import with no table files written.

Precedence is encoded by the layering of the rules rather than a precedence table, which keeps the
grammar free of conflicts: ``NOT`` binds tightest, then ``AND``, then ``OR``; parentheses group.
Chains are collected into lists so that ``a AND b AND c`` becomes one ``And`` of three operands.
Selectors are ``unary`` productions themselves (one reduction fewer per selector: parsing is the
largest part of compiling a query).
"""

from __future__ import annotations

from typing import Any

from ply import yacc

from evaluator.query import lexer as _lexer
from evaluator.query.ast import And, Comparator, Expr, Member, Not, Or, Selector, SetSelector
from evaluator.query.errors import QueryError

tokens = _lexer.tokens
start = "query"


_COMPARATORS = {comparator.value: comparator for comparator in Comparator}


def _chain(kind: type[And] | type[Or], operands: list[Expr]) -> Expr:
    return operands[0] if len(operands) == 1 else kind(tuple(operands))


def p_query(p: Any) -> None:
    "query : or_list"
    p[0] = _chain(Or, p[1])


def p_or_list_one(p: Any) -> None:
    "or_list : and_list"
    p[0] = [_chain(And, p[1])]


def p_or_list_more(p: Any) -> None:
    "or_list : or_list OR and_list"
    p[1].append(_chain(And, p[3]))
    p[0] = p[1]


def p_and_list_one(p: Any) -> None:
    "and_list : unary"
    p[0] = [p[1]]


def p_and_list_more(p: Any) -> None:
    "and_list : and_list AND unary"
    p[1].append(p[3])
    p[0] = p[1]


def p_unary_not(p: Any) -> None:
    "unary : NOT unary"
    p[0] = Not(p[2], position=p.lexpos(1))


def p_unary_group(p: Any) -> None:
    "unary : LPAREN or_list RPAREN"
    p[0] = _chain(Or, p[2])


def p_selector(p: Any) -> None:
    """unary : key EQ value
    | key NE value
    | key LT value
    | key LE value
    | key GT value
    | key GE value"""
    key, key_position = p[1]
    value, value_position = p[3]
    p[0] = Selector(key, _COMPARATORS[p[2]], value, key_position=key_position, value_position=value_position)


def p_set_selector(p: Any) -> None:
    """unary : key IN LBRACE members RBRACE
    | key NOTIN LBRACE members RBRACE"""
    key, key_position = p[1]
    p[0] = SetSelector(key, tuple(p[4]), negated=p[2].lower() == "notin", key_position=key_position)


def p_key(p: Any) -> None:
    """key : IDENT
    | STRING"""
    p[0] = (p[1], p.lexpos(1))


def p_value(p: Any) -> None:
    """value : IDENT
    | STRING
    | INT
    | FLOAT
    | IPV4"""
    p[0] = (p[1], p.lexpos(1))


def p_members_one(p: Any) -> None:
    "members : member"
    p[0] = [p[1]]


def p_members_more(p: Any) -> None:
    "members : members COMMA member"
    p[1].append(p[3])
    p[0] = p[1]


def p_member(p: Any) -> None:
    """member : IDENT
    | STRING
    | INT
    | FLOAT
    | IPV4
    | PATTERN"""
    p[0] = Member(p[1], position=p.lexpos(1))


_DESCRIPTIONS = {
    "IDENT": "a key or value",
    "STRING": "a quoted string",
    "INT": "an integer",
    "FLOAT": "a number",
    "IPV4": "an IPv4 address",
    "PATTERN": "a wildcard pattern",
    "LPAREN": "(",
    "RPAREN": ")",
    "LBRACE": "{",
    "RBRACE": "}",
    "COMMA": ",",
    "EQ": "=",
    "NE": "!=",
    "LT": "<",
    "LE": "<=",
    "GT": ">",
    "GE": ">=",
    "AND": "AND",
    "OR": "OR",
    "NOT": "NOT",
    "IN": "IN",
    "NOTIN": "NOTIN",
    "$end": "end of query",
}


def _expected() -> tuple[str, ...]:
    state = PARSER.statestack[-1] if PARSER.statestack else 0
    names = sorted(PARSER.action.get(state, {}), key=lambda name: list(_DESCRIPTIONS).index(name))
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(_DESCRIPTIONS.get(name, name), None)
    return tuple(seen)


def p_error(tok: Any) -> None:
    expected = _expected()
    if tok is None:
        raise QueryError("unexpected end of query", position=None, expected=expected, syntax=True)
    shown = repr(tok.value) if tok.type in ("STRING", "IDENT", "PATTERN") else str(tok.value)
    reason = f"unexpected {shown}"
    if tok.type == "PATTERN":
        reason = f"wildcard pattern {shown} is only allowed inside IN {{...}} or NOTIN {{...}}"
    raise QueryError(reason, position=tok.lexpos, expected=expected, syntax=True)


PARSER = yacc.yacc(debug=False, write_tables=False, optimize=False, errorlog=yacc.NullLogger())
# Without default reductions an error is seen in the state where it occurs, so the list of what was
# expected there is complete.
PARSER.disable_defaulted_states()
