"""Hypothesis: ``parse(unparse(tree)) == tree`` for generated trees, and unparse is canonical."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.query import And, Comparator, Expr, Member, Not, Or, Selector, SetSelector, parse, unparse

text = st.text(min_size=0, max_size=12)
identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}(\.[A-Za-z0-9_]{1,4}){0,2}", fullmatch=True)
keys = st.one_of(identifier, text)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False).filter(math.isfinite),
)
values = st.one_of(keys, numbers, st.sampled_from(["and", "NOT", "In", "10.0.0.0/8", "1e5", "-"]))
patterns = st.from_regex(r"[A-Za-z0-9_.]{0,3}[*?][A-Za-z0-9_.*?]{0,3}", fullmatch=True)

selectors = st.builds(Selector, keys, st.sampled_from(list(Comparator)), values)
set_selectors = st.builds(
    SetSelector,
    keys,
    st.lists(st.builds(Member, st.one_of(values, patterns)), min_size=1, max_size=4).map(tuple),
    st.booleans(),
)


def trees() -> st.SearchStrategy[Expr]:
    return st.recursive(
        st.one_of(selectors, set_selectors),
        lambda inner: st.one_of(
            st.builds(Not, inner),
            st.lists(inner, min_size=2, max_size=4).map(lambda items: And(tuple(items))),
            st.lists(inner, min_size=2, max_size=4).map(lambda items: Or(tuple(items))),
        ),
        max_leaves=12,
    )


@settings(max_examples=400, deadline=None)
@given(trees())
def test_round_trip(tree: Expr) -> None:
    text = unparse(tree)
    assert parse(text) == tree
    assert unparse(parse(text)) == text


@settings(max_examples=200, deadline=None)
@given(trees(), st.sampled_from([" ", "  ", "\n", "\t "]))
def test_whitespace_and_keyword_case_do_not_matter(tree: Expr, space: str) -> None:
    text = unparse(tree)
    # Only outside strings: the canonical text quotes every string holding a space or a keyword.
    loose = text.replace(" AND ", f"{space}and{space}").replace(" OR ", f"{space}or{space}")
    if '"' not in text:
        assert parse(loose) == tree
