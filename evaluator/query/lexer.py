"""Tokens of the query language (PLY lexer), built once at import; no table files are written.

Identifiers (keys and bare values) are letters, digits, ``_`` and ``-`` with dots inside, starting with a
letter or ``_`` (``servers.labels.k8s-app = kube-dns``, as Kubernetes names are written); AND, OR, NOT, IN
and NOTIN are keywords in any letter case. Strings take single or double quotes with backslash
escapes. A bare word holding ``*`` or ``?`` is a wildcard pattern (only valid as a set member).
Bare IPv4 addresses and CIDRs are accepted as values; anything else starting with a digit must be a
number, or be quoted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ply import lex

from evaluator.query.errors import QueryError

KEYWORDS = {"and": "AND", "or": "OR", "not": "NOT", "in": "IN", "notin": "NOTIN"}

tokens = (
    "AND",
    "OR",
    "NOT",
    "IN",
    "NOTIN",
    "IDENT",
    "PATTERN",
    "STRING",
    "INT",
    "FLOAT",
    "IPV4",
    "EQ",
    "NE",
    "LE",
    "GE",
    "LT",
    "GT",
    "LPAREN",
    "RPAREN",
    "LBRACE",
    "RBRACE",
    "COMMA",
)

t_ignore = " \t\r\n"

t_NE = r"!="
t_LE = r"<="
t_GE = r">="
t_EQ = r"="
t_LT = r"<"
t_GT = r">"
t_LPAREN = r"\("
t_RPAREN = r"\)"
t_LBRACE = r"\{"
t_RBRACE = r"\}"
t_COMMA = r","

_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "/": "/", "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]{1,3})?")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)


def t_STRING(t: Any) -> Any:
    r""" "(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"""
    t.value = unescape(t.value[1:-1], t.lexpos + 1)
    return t


def t_PATTERN(t: Any) -> Any:
    r"[A-Za-z0-9_.-]*[*?][A-Za-z0-9_.*?-]*"
    return t


def t_NUMBER(t: Any) -> Any:
    r"-?[0-9](?:[eE][+-]|[0-9A-Za-z_.:/])*"
    text = t.value
    if _INT.fullmatch(text):
        t.type, t.value = "INT", int(text)
    elif _FLOAT.fullmatch(text):
        t.type, t.value = "FLOAT", float(text)
    elif _IPV4.fullmatch(text):
        t.type = "IPV4"
    else:
        raise QueryError(
            f"malformed value {text!r}: not a number; quote addresses and other text",
            position=t.lexpos,
            expected=("a number", "an IPv4 address", "a quoted string"),
            suggestion=text,
        )
    return t


def t_IDENT(t: Any) -> Any:
    r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*"
    t.type = KEYWORDS.get(t.value.lower(), "IDENT")
    return t


def t_error(t: Any) -> None:
    char = t.value[0]
    if char in "\"'":
        raise QueryError(
            f"unterminated string: no closing {char} for the quote opened here",
            position=t.lexpos,
            expected=(f"a closing {char}",),
        )
    raise QueryError(
        f"unexpected character {describe_char(char)}",
        position=t.lexpos,
        expected=("a key", "a value", "an operator", "( or )"),
    )


def describe_char(char: str) -> str:
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    if char.isprintable() and not char.isspace():
        return f"{char!r} ({code}{' ' + name if name else ''})"
    return f"{code}{' ' + name if name else ' (unprintable)'}"


def unescape(body: str, start: int) -> str:
    """Resolve backslash escapes; ``start`` is the offset of ``body`` in the query, for errors."""
    if "\\" not in body:
        return body

    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape in _ESCAPES:
            return _ESCAPES[escape]
        if escape[0] in "uU" and len(escape) in (5, 9) and int(escape[1:], 16) <= 0x10FFFF:
            return chr(int(escape[1:], 16))
        raise QueryError(
            f"unknown escape \\{escape} in string",
            position=start + match.start(),
            expected=("\\\\", '\\"', "\\'", "\\n", "\\t", "\\r", "\\uXXXX", "\\UXXXXXXXX"),
        )

    return _ESCAPE.sub(replace, body)


LEXER = lex.lex(optimize=False, debug=False, reflags=int(re.VERBOSE | re.DOTALL))


@dataclass(frozen=True, slots=True)
class Token:
    type: str
    value: str | int | float
    position: int


def tokenize(text: str) -> list[Token]:
    """The token list of ``text`` (for tests and tools); raises QueryError."""
    lexer = LEXER.clone()
    lexer.input(text)
    out: list[Token] = []
    while (tok := lexer.token()) is not None:
        out.append(Token(tok.type, tok.value, tok.lexpos))
    return out
