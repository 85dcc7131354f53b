"""Lexer tokens, grammar shape, unparse round trips and parse errors."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from evaluator.query import And, Comparator, Member, Not, Or, QueryError, Selector, SetSelector, parse, unparse
from evaluator.query.lexer import tokenize


def types(text: str) -> list[str]:
    return [token.type for token in tokenize(text)]


def test_tokens_of_a_selector_chain() -> None:
    assert types('count > 100 AND "servers.ip" = "127.0.0.1"') == [
        "IDENT",
        "GT",
        "INT",
        "AND",
        "STRING",
        "EQ",
        "STRING",
    ]


def test_tokens_of_every_comparator_and_punctuation() -> None:
    assert types("a=1 b!=2 c<3 d<=4 e>5 f>=6 ( ) { } ,") == [
        *["IDENT", "EQ", "INT", "IDENT", "NE", "INT", "IDENT", "LT", "INT"],
        *["IDENT", "LE", "INT", "IDENT", "GT", "INT", "IDENT", "GE", "INT"],
        *["LPAREN", "RPAREN", "LBRACE", "RBRACE", "COMMA"],
    ]


def test_keywords_in_any_case_and_identifiers_with_dots() -> None:
    assert types("and OR Not in NOTIN notin x.y_z.w _a") == [
        *["AND", "OR", "NOT", "IN", "NOTIN", "NOTIN", "IDENT", "IDENT"],
    ]


def test_token_values_numbers_ipv4_patterns_and_strings() -> None:
    tokens = tokenize('-5 2.5 -1e3 10.0.0.0/8 a*b? \'it\\\'s\' "tab\\there" "\\u00e9"')
    assert [(t.type, t.value) for t in tokens] == [
        ("INT", -5),
        ("FLOAT", 2.5),
        ("FLOAT", -1000.0),
        ("IPV4", "10.0.0.0/8"),
        ("PATTERN", "a*b?"),
        ("STRING", "it's"),
        ("STRING", "tab\there"),
        ("STRING", "é"),
    ]
    assert [t.position for t in tokens] == [0, 3, 7, 12, 23, 28, 36, 48]


def test_precedence_not_over_and_over_or() -> None:
    a, b, c = (Selector(name, Comparator.EQ, 1) for name in "abc")
    assert parse("a=1 OR b=1 AND c=1") == Or((a, And((b, c))))
    assert parse("NOT a=1 AND b=1") == And((Not(a), b))
    assert parse("(a=1 OR b=1) AND c=1") == And((Or((a, b)), c))
    assert parse("a=1 and b=1 and c=1") == And((a, b, c))
    assert parse("a=1 AND (b=1 AND c=1)") == And((a, And((b, c))))


def test_sets_with_wildcards() -> None:
    tree = parse("key IN {a, b*, 'c d', 3} AND k NOTIN {x?}")
    assert tree == And(
        (
            SetSelector("key", (Member("a"), Member("b*"), Member("c d"), Member(3))),
            SetSelector("k", (Member("x?"),), negated=True),
        )
    )


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_query_selects_all(text: str) -> None:
    assert parse(text) is None
    assert unparse(None) == ""


@pytest.mark.parametrize(
    "text",
    [
        "count > 0",
        '"servers.ip" = "127.0.0.1"',
        "count > 100 AND client_name=mypod",
        "client_namespace = ns1 OR client_namespace = ns2",
        "count > 100 AND NOT (client_namespace = ns1 OR client_namespace = ns2)",
        "(qtype = A OR qtype = AAAA) AND rcode != NoError",
        "rcode = NXDomain AND (rtype = A or rtype = AAAA)",
        'dest_labels="application=postgres" AND source_type=net AND action=allow AND proto=tcp AND dest_port=5432',
        'dest_namespace="<desired namespace>" AND dest_port=80',
        "action=allow",
    ],
)
def test_every_spec_query_parses_and_round_trips(text: str) -> None:
    tree = parse(text)
    assert tree is not None
    assert parse(unparse(tree)) == tree


def test_unparse_quotes_what_a_bare_word_cannot_hold() -> None:
    tree = Selector("weird key", Comparator.NE, 'and "quoted"\n')
    assert unparse(tree) == '"weird key" != "and \\"quoted\\"\\n"'
    assert parse(unparse(tree)) == tree
    assert unparse(Selector("a", Comparator.EQ, 1.0)) == "a = 1.0"
    assert parse("a = 1.0") == Selector("a", Comparator.EQ, 1.0)


@pytest.mark.parametrize(
    ("text", "position", "needle", "expected"),
    [
        ("a=1 b=2", 4, "unexpected 'b'", "AND"),
        ("a=", 2, "unexpected end of query", "a quoted string"),
        ("a IN {}", 6, "unexpected }", "a wildcard pattern"),
        ("a IN {1 2}", 8, "unexpected 2", ","),
        ("a = b*", 4, "only allowed inside IN", "a key or value"),
        ("(a=1", 4, "unexpected end of query", ")"),
        ("a=1)", 3, "unexpected )", "end of query"),
        ("a == 1", 3, "unexpected =", "a key or value"),
        ('a = "abc', 4, "unterminated string", 'a closing "'),
        ("a = 'abc", 4, "unterminated string", "a closing '"),
        ('a = "x\\q"', 6, "unknown escape \\q", "\\n"),
        ("a = 2001:db8::1", 4, "malformed value", "a quoted string"),
        ("a = 1 @", 6, "unexpected character '@'", "a key"),
    ],
)
def test_syntax_errors_carry_position_and_expectation(text: str, position: int, needle: str, expected: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(text)
    error = info.value
    assert error.position == position
    assert needle in error.message
    assert expected in error.expected
    assert error.query == text
    assert "\n" not in str(error)
    assert f"at position {position}" in str(error)


def test_caret_points_at_the_error() -> None:
    with pytest.raises(QueryError) as info:
        parse("count > 1 AND AND x=1")
    assert info.value.caret() == "count > 1 AND AND x=1\n              ^"


def test_no_table_files_are_written(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    code = "from evaluator.query import compile_query; compile_query('count > 1 AND qname = x', 'dns')"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60, env=_env(repo))
    assert list(tmp_path.iterdir()) == []
    package = repo / "evaluator" / "query"
    assert not [path for path in package.rglob("*") if path.name.startswith(("parsetab", "parser.out", "lextab"))]
    assert not (repo / "parser.out").exists() and not list(repo.glob("parsetab*"))


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"}


def test_concurrent_parses_do_not_interfere() -> None:
    texts = [f"k{n} = {n} AND (a = x{n} OR b IN {{p{n}*, {n}}})" for n in range(64)]
    texts += [f"k{n} = = {n}" for n in range(64)]

    def outcome(text: str) -> object:
        try:
            return parse(text)
        except QueryError as error:
            return (error.message, error.position)

    expected = [outcome(text) for text in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            assert list(pool.map(outcome, texts)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(a=1", ("AND", "OR", ")")),
        ("a=1 b=2", ("AND", "OR", "end of query")),
        ("a", ("=", "!=", "<", "<=", ">", ">=", "IN", "NOTIN")),
        ("a IN {1 2}", ("}", ",")),
        ("x = y AND", ("a key or value", "a quoted string", "NOT", "(")),
    ],
)
def test_expected_tokens_are_exact(text: str, expected: tuple[str, ...]) -> None:
    with pytest.raises(QueryError) as info:
        parse(text)
    assert info.value.expected == expected


def test_late_syntax_errors_still_say_what_was_expected() -> None:
    text = "count > 1 AND " * 400 + "count > 1 count"
    with pytest.raises(QueryError) as info:
        parse(text)
    assert info.value.position == len(text) - len("count")
    assert "AND" in info.value.expected and "OR" in info.value.expected
