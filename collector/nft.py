"""nftables ruleset (JSON) -> {policy id: policy name}.

A deny rule tags the packet before dropping it, and its comment names the policy::

    ... meta mark set 0x11 drop comment "default/deny-db"
    ... meta mark set meta mark & 0xffffc000 | 0x11 drop comment "default/deny-db"

The id is the value the rule leaves in ``mark & mask``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

UNMARKED = "unmarked"
_DROP_VERDICTS = ("drop", "reject")


def unmapped_label(policy_id: int) -> str:
    """The policy label of a mark that no rule explains."""
    return f"mark/{policy_id:#x}"


@dataclass(frozen=True)
class MarkRule:
    """One rule that sets a policy mark and drops."""

    policy_id: int
    name: str
    location: str  # "<namespace>: <family> <table> <chain> handle <n>", for logs


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


def mark_rules(ruleset: Mapping[str, Any], *, mask: int, namespace: str) -> list[MarkRule]:
    """Every rule in one ruleset (``nft -j list ruleset``) that sets a policy mark and drops."""
    found: list[MarkRule] = []
    items = ruleset.get("nftables", [])
    if not isinstance(items, list):
        return found
    for item in items:
        rule = item.get("rule") if isinstance(item, Mapping) else None
        if not isinstance(rule, Mapping):
            continue
        exprs = rule.get("expr", [])
        if not isinstance(exprs, list):
            continue
        location = (
            f"{namespace}: {rule.get('family')} {rule.get('table')} {rule.get('chain')} handle {rule.get('handle')}"
        )
        mark_id: int | None = None
        drops = False
        for expr in exprs:
            if not isinstance(expr, Mapping):
                continue
            mangle = expr.get("mangle")
            if isinstance(mangle, Mapping) and _is_meta_mark(mangle.get("key")):
                mark_id, warning = mark_set_id(mangle.get("value"), mask=mask)
                if warning:
                    log.warning("nft rule %s %s", location, warning)
            if any(verdict in expr for verdict in _DROP_VERDICTS):
                drops = True
        if mark_id is None or not drops:
            continue
        if mark_id == 0:
            log.warning("nft rule %s sets no bit of the mark mask %#x; its drops count as %r", location, mask, UNMARKED)
            continue
        comment = rule.get("comment")
        name = comment if isinstance(comment, str) and comment else unmapped_label(mark_id)
        found.append(MarkRule(policy_id=mark_id, name=name, location=location))
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
    """First rule wins for each id (host first, then namespaces by name); a second, different name is a conflict."""
    names: dict[int, str] = {}
    first_at: dict[int, str] = {}
    conflicts: list[str] = []
    for rule in rules:
        known = names.get(rule.policy_id)
        if known is None:
            names[rule.policy_id] = rule.name
            first_at[rule.policy_id] = rule.location
        elif known != rule.name:
            conflicts.append(
                f"mark id {rule.policy_id:#x} is {known!r} at {first_at[rule.policy_id]} but {rule.name!r} at "
                f"{rule.location}; keeping {known!r}"
            )
    return PolicyNames(names=names, conflicts=tuple(conflicts))
