"""Safe YAML: plain data only, bounded aliases, depth and expanded size; clear errors with positions."""

from __future__ import annotations

import pytest

from api.yamlio import MAX_ALIASES, DecodeError, load_json, load_yaml_documents


def test_plain_documents() -> None:
    text = "a: 1\nb: [x, 'y']\n---\n# empty next\n---\nc: 2024-01-02T03:04:05Z\nd: &n {k: v}\ne: *n\n"
    assert load_yaml_documents(text) == [
        {"a": 1, "b": ["x", "y"]},
        {"c": "2024-01-02T03:04:05+00:00", "d": {"k": "v"}, "e": {"k": "v"}},
    ]


def test_non_string_keys_become_strings() -> None:
    assert load_yaml_documents("1: a\nfalse: b\n~: c\n") == [{"1": "a", "false": "b", "null": "c"}]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: !!python/object/apply:os.system [echo hi]", "not allowed"),
        ("a: !!binary aGk=", "not allowed"),
        ("a: !custom x", "not allowed"),
        ("a: !!str 5", "not allowed"),
        ("a: &a [*a]", "recursive"),
        ("a: [" * 70 + "]" * 70, "deeper than"),
        ("a: b: c", "line 1, column"),
        ("a:\n\t- b", "line 2"),
        ("? [a, b]\n: c\n", "unhashable key"),
    ],
)
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        load_yaml_documents(text)


def test_billion_laughs_is_bounded() -> None:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        refs = ", ".join([f"*l{i - 1}"] * 9)
        lines.append(f"l{i}: &l{i} [{refs}]")
    with pytest.raises(DecodeError, match="once aliases are expanded|aliases"):
        load_yaml_documents("\n".join(lines))


def test_alias_count_limit() -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(DecodeError, match="aliases"):
        load_yaml_documents(text)


def test_json_errors_have_positions() -> None:
    with pytest.raises(DecodeError, match="line 2, column 1"):
        load_json('{"a": 1,\n}')
    with pytest.raises(DecodeError, match="nested"):
        load_json("[" * 100_000 + "]" * 100_000)


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(DecodeError, match="line 3, column 3: duplicate key 'severity'"):
        load_yaml_documents("spec:\n  severity: 1\n  severity: 2\n")
    with pytest.raises(DecodeError, match="duplicate key 'a'"):
        load_json('{"a": 1, "a": 2}')
    assert load_yaml_documents("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")[0]["other"] == {"x": 1, "y": 2}
