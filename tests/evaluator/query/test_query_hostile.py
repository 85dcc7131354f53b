"""Hostile input: huge, deeply nested, NUL, odd unicode, unterminated strings.

Each gives a QueryError that says what is wrong and where, within the per-test timeout, and never a
RecursionError, even for trees built by hand rather than parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, select

from evaluator.db import metadata
from evaluator.logstore import insert_records, table_for, values_table_for
from evaluator.query import (
    Comparator,
    Not,
    QueryError,
    Selector,
    compile_query,
    parse,
    to_dsl,
    to_sql,
    unparse,
    validate,
)
from evaluator.query.parser import MAX_DEPTH, MAX_QUERY_LENGTH
from evaluator.query.validate import MAX_TERMS

pytestmark = pytest.mark.timeout(20)


def error_of(text: str, dataset: str = "dns") -> QueryError:
    with pytest.raises(QueryError) as info:
        compile_query(text, dataset)
    assert "\n" not in str(info.value)
    return info.value


def test_one_megabyte_query() -> None:
    text = "count > 1 AND " * (1_048_576 // 14) + "count > 1"
    error = error_of(text)
    assert f"the limit is {MAX_QUERY_LENGTH}" in error.message
    assert error.position == MAX_QUERY_LENGTH


def test_one_megabyte_string_value() -> None:
    error = error_of('rcode = "' + "x" * 1_048_576 + '"')
    assert "characters long" in error.message


@pytest.mark.parametrize("levels", [100_000, 30_000, MAX_DEPTH + 1])
def test_nested_parentheses(levels: int) -> None:
    error = error_of("(" * levels + "count > 1" + ")" * levels)
    if 2 * levels + 9 > MAX_QUERY_LENGTH:
        assert "characters long" in error.message
    else:
        assert f"more than {MAX_DEPTH} levels deep" in error.message
        assert error.position == MAX_DEPTH


def test_unbalanced_parentheses() -> None:
    assert error_of("(" * 20_000).message.startswith("parentheses nest")
    error = error_of(")" * 20_000)
    assert error.message == "unexpected )" and error.position == 0


def test_nesting_at_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 1
    assert compile_query("(" * depth + "count > 1" + ")" * depth, "dns") is not None


def test_long_not_chain() -> None:
    error = error_of("NOT " * 16_000 + "count > 1")
    assert f"more than {MAX_DEPTH} levels deep" in error.message
    assert error.position == 4 * (MAX_DEPTH - 1)


def test_too_many_terms() -> None:
    error = error_of(" OR ".join(f"count = {n}" for n in range(MAX_TERMS + 1)))
    assert f"more than {MAX_TERMS} selectors" in error.message
    assert error.position == len(" OR ".join(f"count = {n}" for n in range(MAX_TERMS))) + 4
    error = error_of("rcode IN {" + ", ".join(f"x{n}" for n in range(MAX_TERMS + 1)) + "}")
    assert f"more than {MAX_TERMS} selectors" in error.message


def fill(engine: Engine) -> None:
    metadata.create_all(engine, tables=[table_for("dns"), values_table_for("dns")])
    with engine.begin() as conn:
        insert_records(conn, "dns", [{"end_time": 0, "count": 7, "rcode": "x7", "rrsets": [{"rdata": ["x9"]}]}])


HALF = (MAX_DEPTH - 2) // 2
EVEN = HALF - HALF % 2


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    fill(engine)
    yield engine
    engine.dispose()


LARGEST = [
    " OR ".join(f"count = {n}" for n in range(MAX_TERMS)),
    " AND ".join(f"count != {n}" for n in range(8, MAX_TERMS + 7)),
    "rcode IN {" + ", ".join(f"x{n}" for n in range(MAX_TERMS)) + "}",
    "rrsets.rdata IN {" + ", ".join(f"x{n}*" for n in range(9, MAX_TERMS + 9)) + "}",
    "(" * (MAX_DEPTH - 1) + " OR ".join(f"count = {n}" for n in range(10)) + ")" * (MAX_DEPTH - 1),
    "".join(f"(count = {n} OR " for n in range(MAX_DEPTH - 1)) + "count = 7" + ")" * (MAX_DEPTH - 1),
    # An even number of NOTs, so that the record is selected.
    "".join(f"NOT (count != {n} AND " for n in range(8, 8 + EVEN)) + "count = 7" + ")" * EVEN,
    "".join(f"count != {n} AND (count = {n} OR " for n in range(8, 8 + HALF)) + "count = 7" + ")" * HALF,
    "NOT " * (MAX_DEPTH - 2) + "rrsets.rdata IN {x9, y*}",
]


@pytest.mark.parametrize(
    "text",
    LARGEST,
    ids=["or-chain", "and-chain", "set", "patterns", "deep-group", "deep-or", "deep-not", "and-or", "nots"],
)
def test_largest_allowed_queries_run_on_sqlite(engine: Engine, text: str) -> None:
    run_largest(engine, text)


def run_largest(engine: Engine, text: str) -> None:
    expr = compile_query(text, "dns")
    table = table_for("dns")
    with engine.connect() as conn:
        found = conn.execute(select(table.c.count).where(to_sql(expr, "dns"))).scalars().all()
    assert found == [7]
    assert len(json.dumps(to_dsl(expr, "dns"))) > 0


@pytest.mark.postgres
def test_largest_allowed_queries_run_on_postgres(pg_database: str) -> None:
    engine = create_engine(pg_database)
    try:
        fill(engine)
        for text in LARGEST:
            run_largest(engine, text)
    finally:
        engine.dispose()


def test_hand_built_deep_trees_are_refused_not_recursed() -> None:
    tree: Not | Selector = Selector("count", Comparator.GT, 1)
    for _ in range(50_000):
        tree = Not(tree)
    for compile_step in (lambda: validate(tree, "dns"), lambda: to_dsl(tree, "dns"), lambda: to_sql(tree, "dns")):
        with pytest.raises(QueryError, match="levels deep"):
            compile_step()
    assert unparse(tree).startswith("NOT NOT NOT")


@pytest.mark.parametrize(
    ("text", "position", "needle"),
    [
        ("count > 1\x00", 9, "U+0000"),
        ("\x00", 0, "U+0000"),
        ("count\u00a0> 1", 5, "U+00A0 NO-BREAK SPACE"),
        ("count \u202e> 1", 6, "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("count \u200b> 1", 6, "U+200B ZERO WIDTH SPACE"),
        ("count ＝ 1", 6, "FULLWIDTH EQUALS SIGN"),
        ("cöunt = 1", 1, "LATIN SMALL LETTER O WITH DIAERESIS"),
        ("count = 1 \U0001f4a9", 10, "PILE OF POO"),
        ("count = 1 \ud800", 10, "U+D800"),
        ("count = \ufeff1", 8, "U+FEFF"),
    ],
)
def test_odd_characters_outside_strings(text: str, position: int, needle: str) -> None:
    error = error_of(text)
    assert error.position == position
    assert needle in error.message


@pytest.mark.parametrize(
    ("text", "position", "needle"),
    [
        ('rcode = "a\x00b"', 8, "U+0000"),
        ('rcode = "a\\u0000b"', 8, "U+0000"),
        ('rcode = "\\ud800"', 8, "U+D800"),
        ('"client_labels.a\x01" = x', 0, "unknown key"),
    ],
)
def test_odd_characters_inside_strings(text: str, position: int, needle: str) -> None:
    error = error_of(text)
    assert error.position == position
    assert needle in str(error)


def test_unicode_values_that_are_fine() -> None:
    assert unparse(compile_query('rcode = "ñandú ✓"', "dns")) == 'rcode = "ñandú ✓"'
    assert unparse(compile_query('qname = "Пример.РФ"', "dns")) == 'qname = "xn--e1afmkfd.xn--p1ai"'


@pytest.mark.parametrize(
    ("text", "position", "needle"),
    [
        ('rcode = "abc', 8, 'no closing "'),
        ("rcode = 'abc", 8, "no closing '"),
        ('rcode = "abc\\"', 8, 'no closing "'),
        ('rcode = "abc\\', 8, 'no closing "'),
        ('"servers.ip = 1', 0, 'no closing "'),
        ('rcode IN {"a", "b}', 15, 'no closing "'),
        ('rcode = "' + "x" * 60_000, 8, 'no closing "'),
    ],
)
def test_unterminated_strings(text: str, position: int, needle: str) -> None:
    error = error_of(text)
    assert error.position == position
    assert needle in error.message
    assert error.expected == (f"a closing {needle[-1]}",)


def test_non_string_query_is_refused() -> None:
    with pytest.raises(QueryError, match="must be a string"):
        parse(b"count > 1")  # type: ignore[arg-type]
