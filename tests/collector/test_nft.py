"""nft JSON -> policy names, on a ruleset dumped by the real nft (tests/collector/data/ruleset_marks.json)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from collector.nft import UNMARKED, MarkRule, build_policy_names, mark_rules, mark_set_id, unmapped_label

DATA = Path(__file__).parent / "data"


def ruleset() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "ruleset_marks.json").read_text())
    return data


def test_both_mark_forms_and_only_dropping_rules() -> None:
    rules = mark_rules(ruleset(), mask=0x3FFF, namespace="ns1")
    by_id = [(r.policy_id, r.name) for r in rules]
    assert by_id == [
        (0x11, "default/deny-db"),  # plain `meta mark set 0x11 ... drop`
        (0x22, "profile/k8s_ns.ns-0/0/deny"),  # masked `meta mark set meta mark & 0xffffc000 | 0x22`
        (0x44, unmapped_label(0x44)),  # marks and drops but has no comment
        (0x55, "ssh/reject"),  # reject ends in a netfilter drop too
        (0x11, "other-name-for-0x11"),
    ]
    # the accepted-but-tagged rule (0x33) and the unmarked drop are not policy rules
    assert all(r.policy_id != 0x33 for r in rules)
    assert rules[0].location.startswith("ns1: inet filter input handle ")


def test_id_is_the_mark_under_the_mask() -> None:
    rules = mark_rules(ruleset(), mask=0x0F, namespace="h")
    # 0x11 & 0xf = 1, 0x22 & 0xf = 2; 0x44 & 0xf = 4; 0x55 & 0xf = 5
    assert [r.policy_id for r in rules] == [1, 2, 4, 5, 1]


def test_rule_setting_no_bit_of_the_mask_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        rules = mark_rules(ruleset(), mask=0x100, namespace="h")
    assert rules == []
    assert "sets no bit of the mark mask 0x100" in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (17, 17),
        ("0x11", 17),
        ({"|": [{"&": [{"meta": {"key": "mark"}}, 0xFFFFC000]}, 0x22]}, 0x22),
        ({"^": [{"&": [{"meta": {"key": "mark"}}, 0xFFFF0000]}, 0x7]}, 0x7),
        ({"|": [{"&": [{"meta": {"key": "ct"}}, 0xFFFF0000]}, 0x7]}, None),  # not the packet mark
        ({"&": [{"meta": {"key": "mark"}}, 0xFF]}, None),
        (True, None),
        ([1, 2], None),
    ],
)
def test_mark_set_id_forms(value: Any, expected: int | None) -> None:
    assert mark_set_id(value, mask=0x3FFF)[0] == expected


def test_masked_form_that_keeps_id_bits_warns() -> None:
    mark_id, warning = mark_set_id({"|": [{"&": [{"meta": {"key": "mark"}}, 0xFFFFFFF0]}, 0x1]}, mask=0xFF)
    assert mark_id == 1
    assert warning is not None and "0xf0" in warning


def test_conflict_keeps_first_name_and_reports() -> None:
    names = build_policy_names(mark_rules(ruleset(), mask=0x3FFF, namespace="host"))
    assert names.label(0x11) == "default/deny-db"
    assert len(names.conflicts) == 1
    assert "other-name-for-0x11" in names.conflicts[0] and "keeping 'default/deny-db'" in names.conflicts[0]


def test_same_name_twice_is_no_conflict() -> None:
    names = build_policy_names([MarkRule(1, "a", "x"), MarkRule(1, "a", "y")])
    assert names.conflicts == ()


def test_fallback_labels() -> None:
    names = build_policy_names([MarkRule(0x11, "p", "x")])
    assert names.label(0) == UNMARKED == "unmarked"
    assert names.label(0x2A) == "mark/0x2a"
    assert names.knows(0) and names.knows(0x11) and not names.knows(0x2A)


def test_garbage_json_yields_nothing() -> None:
    assert mark_rules({"nftables": "nope"}, mask=0xFF, namespace="h") == []
    assert mark_rules({"nftables": [{"rule": {"expr": "x"}}, 3, {"table": {}}]}, mask=0xFF, namespace="h") == []
