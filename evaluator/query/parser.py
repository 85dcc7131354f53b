"""``parse``: query text to syntax tree, with the limits that keep hostile input cheap and safe."""

from __future__ import annotations

import threading

from evaluator.query import grammar
from evaluator.query.ast import Expr, Not, depth, walk
from evaluator.query.errors import QueryError
from evaluator.query.lexer import LEXER

MAX_QUERY_LENGTH = 65_536
MAX_DEPTH = 24
# Syntax errors this early get their exact list of acceptable tokens by trial parses (see expected_at).
MAX_PROBED_PREFIX = 4096

# PLY's parser and lexer keep their state as attributes between calls; one parse at a time.
_LOCK = threading.Lock()


def check_length(text: str) -> None:
    """Refuse a query longer than the limit, before any work on it."""
    if not isinstance(text, str):
        raise QueryError(f"a query must be a string, not {type(text).__name__}")
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(
            f"query is {len(text)} characters long; the limit is {MAX_QUERY_LENGTH}",
            position=MAX_QUERY_LENGTH,
            query=text,
            expected=(f"at most {MAX_QUERY_LENGTH} characters",),
        )


def parse(text: str, *, length_checked: bool = False) -> Expr | None:
    """The syntax tree of ``text``, or None for an empty or blank query (which selects everything).

    ``length_checked``: the caller applied ``check_length`` to the text the user wrote (a template's query,
    parsed after its placeholders were quoted, is longer than what the user sent)."""
    if not length_checked:
        check_length(text)
    if not text.strip():
        return None
    if text.count("(") > MAX_DEPTH:
        _check_parentheses(text)
    try:
        with _LOCK:
            tree: Expr = grammar.PARSER.parse(text, lexer=LEXER)
    except QueryError as error:
        if error.position is None and error.message == "unexpected end of query":
            error.position = len(text)
        if error.syntax and error.position is not None and error.position <= MAX_PROBED_PREFIX:
            error.expected = expected_at(text, error.position)
        raise error.with_query(text) from None
    if depth(tree) > MAX_DEPTH:
        raise QueryError(
            f"query nests NOT and parentheses more than {MAX_DEPTH} levels deep",
            position=_deepest_not(tree),
            query=text,
            expected=(f"at most {MAX_DEPTH} levels",),
        )
    return tree


def _check_parentheses(text: str) -> None:
    """Refuse deep nesting before the parser builds anything (a cheap scan outside quotes)."""
    level = 0
    quote = ""
    escaped = False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            level += 1
            if level > MAX_DEPTH:
                raise QueryError(
                    f"parentheses nest more than {MAX_DEPTH} levels deep",
                    position=index,
                    query=text,
                    expected=(f"at most {MAX_DEPTH} levels",),
                )
        elif char == ")":
            level -= 1


def _deepest_not(tree: Expr) -> int | None:
    positions = [node.position for node in walk(tree) if isinstance(node, Not) and node.position is not None]
    return positions[MAX_DEPTH - 1] if len(positions) >= MAX_DEPTH else None


# One sample of each token, with its description in error messages; "" is the end of the query.
_SAMPLES: tuple[tuple[str, str], ...] = (
    ("x", "a key or value"),
    ('"s"', "a quoted string"),
    ("1", "an integer"),
    ("1.5", "a number"),
    ("10.0.0.1", "an IPv4 address"),
    ("x*", "a wildcard pattern"),
    ("=", "="),
    ("!=", "!="),
    ("<", "<"),
    ("<=", "<="),
    (">", ">"),
    (">=", ">="),
    ("AND", "AND"),
    ("OR", "OR"),
    ("NOT", "NOT"),
    ("IN", "IN"),
    ("NOTIN", "NOTIN"),
    ("(", "("),
    (")", ")"),
    ("{", "{"),
    ("}", "}"),
    (",", ","),
    ("", "end of query"),
)


def expected_at(text: str, position: int) -> tuple[str, ...]:
    """What the grammar accepts at ``position``, found by parsing the text before it followed by one
    sample of each token. Exact where LALR tables are not: an LALR parser may reduce on a merged
    lookahead before it notices an error, but it never shifts a token that cannot follow."""
    prefix = text[:position]
    accepted: list[str] = []
    for sample, description in _SAMPLES:
        start = len(prefix) + 1
        try:
            with _LOCK:
                grammar.PARSER.parse(f"{prefix} {sample}", lexer=LEXER)
        except QueryError as error:
            if not sample and error.position is None:
                continue  # the query cannot end here
            if error.position is not None and error.position <= start and sample:
                continue
        accepted.append(description)
    return tuple(accepted)
