"""Attribution that follows the ruleset: nft JSON and iptables-save text dumped by the real tools (data/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collector.iptables import iptables_ruleset, strip_counters
from collector.marks import Chain, MarkMatch, MarkSet, Rule, Ruleset, Verdict, attributions
from collector.nft import build_policy_names, mark_rules
from collector.policies import namespace_rules
from collector.rulesets import Ruleset as NamespaceRuleset
from collector.rulesets import SavedTables, xt_families
from tests.collector.shapes import IPTABLES_LEGACY_EXPECTED, IPTABLES_NFT_EXPECTED, NFT_EXPECTED

DATA = Path(__file__).parent / "data"
MASK = 0x3FFF


def shapes() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "ruleset_shapes.json").read_text())
    return data


def names_of(rules: list[Any]) -> dict[int, str]:
    return dict(build_policy_names(rules).names)


def test_every_nft_shape_is_named_as_the_table_says() -> None:
    names = names_of(mark_rules(shapes(), mask=MASK, namespace="ns-a"))
    assert {k: names.get(k) for k in NFT_EXPECTED} == NFT_EXPECTED
    assert 0x30 not in names  # tagged, then accepted: never dropped
    assert build_policy_names(mark_rules(shapes(), mask=MASK, namespace="ns-a")).conflicts == ()


def test_dropping_rule_comment_beats_the_setter_comment() -> None:
    rules = [r for r in mark_rules(shapes(), mask=MASK, namespace="ns-a") if r.policy_id == 0x21]
    assert {r.name for r in rules} == {"ns-a/later-rule"}
    assert all("forward handle" in r.location for r in rules)


def test_iptables_nft_tables_come_from_the_save_text_not_the_xt_json() -> None:
    text = (DATA / "ruleset_shapes.json").read_text()
    assert xt_families(text) == {"ip"}
    saved = SavedTables("iptables-nft-save", "ip", strip_counters((DATA / "iptables_nft_save.txt").read_text()))
    ruleset = NamespaceRuleset("ns-a", text, inode=7, iptables=(saved,))
    names = names_of(namespace_rules(ruleset, mask=MASK))
    assert {k: names.get(k) for k in IPTABLES_NFT_EXPECTED} == IPTABLES_NFT_EXPECTED
    assert {k: names.get(k) for k in NFT_EXPECTED} == NFT_EXPECTED  # the native table still walked with them
    # kube-proxy's 0x8000 firewall mark has no bit under the mask: an unattributed drop, not a policy
    assert all(k & MASK for k in names)
    # without the save text, xt hides the comment match and the MARK target: no name, only the fallback
    bare = names_of(namespace_rules(NamespaceRuleset("ns-a", text, inode=7), mask=MASK))
    assert (bare.get(0x31), bare.get(0x32)) == ("mark/0x31", "mark/0x32")


def test_iptables_legacy_save() -> None:
    ruleset = iptables_ruleset(
        (DATA / "iptables_legacy_save.txt").read_text(), source="iptables-legacy-save", namespace="ns-a"
    )
    rules = [r for a in [attributions(ruleset, mask=MASK)] for r in a]
    names = {a.policy_id: a.name for a in rules}
    assert names == IPTABLES_LEGACY_EXPECTED
    located = {a.policy_id: a.location for a in rules}
    assert located[0x33] == "ns-a: iptables-legacy-save -t filter -A FORWARD (rule 1)"


def test_strip_counters_keeps_rules_and_drops_chain_counters() -> None:
    text = "# Generated\n*filter\n:INPUT ACCEPT [12:3400]\n-A INPUT -j DROP\nCOMMIT\n"
    assert strip_counters(text) == "*filter\n:INPUT ACCEPT\n-A INPUT -j DROP\nCOMMIT"


def test_mark_or_and_masked_or_from_a_known_mark() -> None:
    def rule(*steps: Any, comment: str | None = None) -> Rule:
        return Rule(steps=tuple(steps), comment=comment, location="t")

    chain = Chain(
        rules=(
            rule(MarkSet(keep=0, set_bits=0x100)),
            rule(MarkSet(keep=0xFFFFFFFF, set_bits=0x3), Verdict("jump", "x")),
        ),
        hook="forward",
    )
    sub = Chain(rules=(rule(MarkMatch(mask=0xFFF, values=(0x103,)), Verdict("drop"), comment="p"),))
    found = attributions(Ruleset(chains={("t", "f"): chain, ("t", "x"): sub}, order=(("t", "f"),)), mask=0xFFF)
    assert [(a.policy_id, a.name) for a in found] == [(0x103, "p")]


def test_a_contradicted_match_is_no_path() -> None:
    chain = Chain(
        rules=(
            Rule((MarkSet(keep=0, set_bits=0x5),), "setter", "a"),
            Rule((MarkMatch(mask=0xFF, values=(0x6,)), Verdict("drop")), "wrong", "b"),
            Rule((Verdict("drop"),), None, "c"),
        ),
        hook="input",
    )
    found = attributions(Ruleset(chains={("t", "i"): chain}, order=(("t", "i"),)), mask=0xFF)
    assert [(a.policy_id, a.name, a.location) for a in found] == [(0x5, "setter", "c")]


def test_marks_flow_to_later_hooks_only() -> None:
    pre = Chain(rules=(Rule((MarkSet(keep=0, set_bits=0x7),), "set-in-prerouting", "p"),), hook="prerouting")
    out = Chain(rules=(Rule((MarkSet(keep=0, set_bits=0x9),), "set-in-output", "o"),), hook="output")
    fwd = Chain(rules=(Rule((Verdict("drop"),), None, "f"),), hook="forward")
    ruleset = Ruleset(
        chains={("t", "fwd"): fwd, ("t", "pre"): pre, ("t", "out"): out},
        order=(("t", "fwd"), ("t", "out"), ("t", "pre")),
    )
    assert [(a.policy_id, a.name) for a in attributions(ruleset, mask=0xFF)] == [(0x7, "set-in-prerouting")]


def test_policy_drop_of_a_base_chain_names_the_setter() -> None:
    chain = Chain(rules=(Rule((MarkSet(keep=0, set_bits=0x4),), "tagger", "a"),), hook="input", policy_drop=True)
    found = attributions(Ruleset(chains={("t", "i"): chain}, order=(("t", "i"),)), mask=0xFF)
    assert [(a.policy_id, a.name) for a in found] == [(0x4, "tagger")]
