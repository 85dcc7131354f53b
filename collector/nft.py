"""nftables ruleset (JSON) -> walkable chains (collector/marks.py) -> {policy id: policy name}.

A deny rule tags the packet and drops it, in one rule or along a path, and a comment names the policy::

    ... meta mark set 0x11 drop comment "default/deny-db"
    ... meta mark set meta mark & 0xffffc000 | 0x11 drop comment "default/deny-db"
    ... meta mark set 0x21                      (earlier)   meta mark 0x21 drop comment "ns/p"   (later)
    ... meta mark set 0x22 jump deny            (chain deny: drop)

The id is the value the path leaves in ``mark & mask``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collector.marks import (
    ALL_BITS,
    Chain,
    Cond,
    MarkMatch,
    MarkSet,
    MarkUnknown,
    Rule,
    Ruleset,
    Step,
    Verdict,
    VerdictMap,
    attributions,
)

log = logging.getLogger(__name__)

UNMARKED = "unmarked"


def unmapped_label(policy_id: int) -> str:
    """The policy label of a mark that no rule explains."""
    return f"mark/{policy_id:#x}"


@dataclass(frozen=True)
class MarkRule:
    """One rule that sets a policy mark and drops."""

    policy_id: int
    name: str
    location: str  # "<namespace>: <family> <table> <chain> handle <n>", for logs
    namespace: str = "host"
    named: bool = True  # False: no comment names it, ``name`` is the mark/0x.. fallback


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def _is_meta_mark(expr: Any) -> bool:
    return isinstance(expr, Mapping) and expr.get("meta", {}).get("key") == "mark"


def mark_set_id(value: Any, *, mask: int) -> tuple[int | None, str | None]:
    """(id, warning) from a ``mangle`` value of ``meta mark``: plain ``ID`` or ``meta mark & AND | ID``."""
    plain = _int(value)
    if plain is not None:
        return plain & mask, None
    if not isinstance(value, Mapping) or len(value) != 1:
        return None, None
    (op, operands), *_ = value.items()
    if op not in ("|", "^") or not isinstance(operands, Sequence) or len(operands) != 2:
        return None, None
    inner, set_bits = operands
    set_value = _int(set_bits)
    if set_value is None or not isinstance(inner, Mapping) or set(inner) != {"&"}:
        return None, None
    masked = inner["&"]
    if not isinstance(masked, Sequence) or len(masked) != 2 or not _is_meta_mark(masked[0]):
        return None, None
    keep = _int(masked[1])
    if keep is None:
        return None, None
    warning = None
    if keep & mask & ~set_value:
        warning = (
            f"keeps mark bits {keep & mask & ~set_value:#x} inside the collector's mark mask {mask:#x}; "
            "the id it leaves depends on the packet's earlier mark"
        )
    return set_value & mask, warning


_TERMINAL_STATEMENTS = ("queue", "dnat", "snat", "masquerade", "redirect", "tproxy", "synproxy")
_VERDICTS = ("accept", "drop", "jump", "goto", "return", "continue")


def _verdict(expr: Mapping[str, Any]) -> Verdict | None:
    for kind in _VERDICTS:
        if kind in expr:
            target = expr[kind].get("target") if isinstance(expr[kind], Mapping) else None
            return Verdict(kind, target if isinstance(target, str) else None)
    if "reject" in expr:
        return Verdict("drop")
    if any(k in expr for k in _TERMINAL_STATEMENTS):
        return Verdict("accept")
    return None


def _mark_match(match: Mapping[str, Any]) -> MarkMatch | None:
    left, right, op = match.get("left"), match.get("right"), match.get("op", "==")
    if _is_meta_mark(left):
        mask = ALL_BITS
    elif isinstance(left, Mapping) and set(left) == {"&"} and isinstance(left["&"], Sequence):
        operands = left["&"]
        if len(operands) != 2 or not _is_meta_mark(operands[0]) or _int(operands[1]) is None:
            return None
        mask = _int(operands[1]) or 0
    else:
        return None
    if isinstance(right, Mapping) and isinstance(right.get("set"), list):
        values = [_int(v) for v in right["set"]]
    else:
        values = [_int(right)]
    if any(v is None for v in values) or op not in ("==", "!=", "in"):
        return None
    return MarkMatch(mask=mask, values=tuple(v for v in values if v is not None), negate=op == "!=")


def _mark_set(value: Any) -> MarkSet | MarkUnknown:
    """The step of ``meta mark set VALUE``: ``ID``, ``meta mark | ID``, ``meta mark & K | ID``, ``... ^ ID``."""
    plain = _int(value)
    if plain is not None:
        return MarkSet(keep=0, set_bits=plain & ALL_BITS)
    if isinstance(value, Mapping) and len(value) == 1:
        (op, operands), *_ = value.items()
        if op in ("|", "^", "&") and isinstance(operands, Sequence) and len(operands) == 2:
            inner, bits = operands
            bits_value = _int(bits)
            if bits_value is not None:
                if _is_meta_mark(inner):
                    keep = bits_value if op == "&" else ALL_BITS
                    return MarkSet(
                        keep=keep, set_bits=bits_value if op == "|" else 0, flip=bits_value if op == "^" else 0
                    )
                if isinstance(inner, Mapping) and set(inner) == {"&"} and op in ("|", "^"):
                    masked = inner["&"]
                    if isinstance(masked, Sequence) and len(masked) == 2 and _is_meta_mark(masked[0]):
                        kept = _int(masked[1])
                        if kept is not None:
                            if op == "|":
                                return MarkSet(keep=kept, set_bits=bits_value)
                            return MarkSet(keep=kept, flip=bits_value)
    return MarkUnknown()


def _steps(exprs: Sequence[Any], maps: Mapping[str, tuple[Verdict, ...]], location: str, mask: int) -> list[Step]:
    steps: list[Step] = []
    for expr in exprs:
        if not isinstance(expr, Mapping):
            continue
        verdict = _verdict(expr)
        if verdict is not None:
            steps.append(verdict)
            break
        match = expr.get("match")
        mangle = expr.get("mangle")
        vmap = expr.get("vmap")
        if isinstance(match, Mapping):
            steps.append(_mark_match(match) or _cond(match))
        elif isinstance(mangle, Mapping) and _is_meta_mark(mangle.get("key")):
            step = _mark_set(mangle.get("value"))
            _, warning = mark_set_id(mangle.get("value"), mask=mask)
            if warning:
                log.warning("nft rule %s %s", location, warning)
            steps.append(step)
        elif isinstance(vmap, Mapping):
            data = vmap.get("data")
            if isinstance(data, str):
                verdicts = maps.get(data.lstrip("@"), ())
            elif isinstance(data, Mapping) and isinstance(data.get("set"), list):
                verdicts = tuple(_elem_verdicts(data["set"]))
            else:
                verdicts = ()
            steps.append(VerdictMap(verdicts))
            break
        elif "xt" in expr:
            xt = expr["xt"] if isinstance(expr["xt"], Mapping) else {}
            if xt.get("type") == "target":
                steps.append(MarkUnknown() if xt.get("name") in ("MARK", "CONNMARK") else Cond())
            else:
                steps.append(Cond())
        elif not any(k in expr for k in ("counter", "log", "mangle", "notrack", "comment")):
            steps.append(Cond())  # limit, quota, set updates, anything else: it may not apply
    return steps


def _cond(match: Mapping[str, Any]) -> Cond:
    right = match.get("right")
    if match.get("op", "==") == "==" and isinstance(right, (int, str)) and not isinstance(right, bool):
        return Cond(json.dumps(match.get("left"), sort_keys=True), json.dumps(right))
    return Cond()


def _elem_verdicts(elems: Iterable[Any]) -> Iterable[Verdict]:
    for elem in elems:
        if isinstance(elem, list) and len(elem) == 2 and isinstance(elem[1], Mapping):
            verdict = _verdict(elem[1])
            if verdict is not None:
                yield verdict


def nft_ruleset(
    ruleset: Mapping[str, Any], *, mask: int, namespace: str, skip_tables: Iterable[tuple[str, str]] = ()
) -> Ruleset:
    """``nft -j list ruleset`` as walkable chains. ``skip_tables`` ((family, table) pairs) are left out: they are
    iptables-nft's, read from iptables-nft-save, which shows what the xt expressions hide."""
    items = ruleset.get("nftables", [])
    if not isinstance(items, list):
        return Ruleset(chains={})
    items = [i for i in items if isinstance(i, Mapping)]
    skip = set(skip_tables)
    maps: dict[tuple[Any, Any], dict[str, tuple[Verdict, ...]]] = {}
    for item in items:
        m = item.get("map")
        if isinstance(m, Mapping) and m.get("map") == "verdict" and isinstance(m.get("elem"), list):
            maps.setdefault((m.get("family"), m.get("table")), {})[str(m.get("name"))] = tuple(
                _elem_verdicts(m["elem"])
            )
    heads: dict[tuple[str, str], Mapping[str, Any]] = {}
    order: list[tuple[str, str]] = []
    rules: dict[tuple[str, str], list[Rule]] = {}
    for item in items:
        chain = item.get("chain")
        rule = item.get("rule")
        entry = chain if isinstance(chain, Mapping) else rule if isinstance(rule, Mapping) else None
        if entry is None:
            continue
        family, table = entry.get("family"), entry.get("table")
        if (family, table) in skip:
            continue
        table_key = f"nft {family} {table}"
        if isinstance(chain, Mapping):
            key = (table_key, str(chain.get("name")))
            heads[key] = chain
            order.append(key)
            continue
        assert isinstance(rule, Mapping)
        exprs = rule.get("expr", [])
        if not isinstance(exprs, list):
            continue
        location = f"{namespace}: {family} {table} {rule.get('chain')} handle {rule.get('handle')}"
        comment = rule.get("comment")
        steps = _steps(exprs, maps.get((family, table), {}), location, mask)
        key = (table_key, str(rule.get("chain")))
        rules.setdefault(key, []).append(
            Rule(
                steps=tuple(steps), comment=comment if isinstance(comment, str) and comment else None, location=location
            )
        )
    chains: dict[tuple[str, str], Chain] = {}
    for key in set(heads) | set(rules):
        head = heads.get(key, {})
        hook = head.get("hook")
        prio = _int(head.get("prio"))
        chains[key] = Chain(
            rules=tuple(rules.get(key, [])),
            hook=hook if isinstance(hook, str) else None,
            priority=prio or 0,
            policy_drop=head.get("policy") == "drop",
            family=str(head.get("family", "")),
        )
    return Ruleset(chains=chains, order=tuple(k for k in order if k in chains))


def mark_rules(ruleset: Mapping[str, Any], *, mask: int, namespace: str) -> list[MarkRule]:
    """Every (policy id, dropping rule) that paths through one ruleset (``nft -j list ruleset``) reach."""
    return rules_from(nft_ruleset(ruleset, mask=mask, namespace=namespace), mask=mask, namespace=namespace)


def rules_from(ruleset: Ruleset, *, mask: int, namespace: str) -> list[MarkRule]:
    found: list[MarkRule] = []
    for a in attributions(ruleset, mask=mask):
        name = a.name if a.name else unmapped_label(a.policy_id)
        found.append(MarkRule(a.policy_id, name, a.location, namespace=namespace, named=a.name is not None))
    return found


@dataclass(frozen=True)
class PolicyNames:
    """An immutable id -> name table plus the conflicts found while building it."""

    names: Mapping[int, str]
    conflicts: tuple[str, ...] = ()

    def label(self, policy_id: int) -> str:
        if policy_id == 0:
            return UNMARKED
        return self.names.get(policy_id) or unmapped_label(policy_id)

    def knows(self, policy_id: int) -> bool:
        return policy_id == 0 or policy_id in self.names


def build_policy_names(rules: Iterable[MarkRule]) -> PolicyNames:
    """First rule wins for each id (host first, then namespaces by name); a second, different name is a conflict.

    A comment beats the ``mark/0x..`` fallback of a path no comment names, without a conflict.
    """
    names: dict[int, str] = {}
    named: dict[int, bool] = {}
    first_at: dict[int, str] = {}
    conflicts: list[str] = []
    for rule in rules:
        known = names.get(rule.policy_id)
        if known is None or (rule.named and not named[rule.policy_id]):
            names[rule.policy_id] = rule.name
            named[rule.policy_id] = rule.named
            first_at[rule.policy_id] = rule.location
        elif known != rule.name and rule.named:
            conflicts.append(
                f"mark id {rule.policy_id:#x} is {known!r} at {first_at[rule.policy_id]} but {rule.name!r} at "
                f"{rule.location}; keeping {known!r}"
            )
    return PolicyNames(names=names, conflicts=tuple(conflicts))
