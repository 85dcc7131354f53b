"""Keeps one mark id -> policy name table per network namespace current as rules change, without a restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from collector.iptables import iptables_ruleset
from collector.marks import merge
from collector.nft import MarkRule, PolicyNames, build_policy_names, nft_ruleset, rules_from
from collector.rulesets import NftRulesetReader, Ruleset, RulesetReader

log = logging.getLogger(__name__)


def namespace_rules(ruleset: Ruleset, *, mask: int) -> list[MarkRule]:
    """The (policy id, name) paths of one namespace: its nft tables and its iptables tables, walked together."""
    try:
        parsed = ruleset.parsed()
    except ValueError as exc:
        log.warning("nft JSON of %s is unreadable, skipped: %s", ruleset.namespace, exc)
        parsed = {}
    skip = {
        (saved.family, line[1:].strip())
        for saved in ruleset.iptables
        for line in saved.text.splitlines()
        if line.startswith("*") and "nft" in saved.command
    }
    parts = [nft_ruleset(parsed, mask=mask, namespace=ruleset.namespace, skip_tables=skip)]
    for saved in ruleset.iptables:
        parts.append(
            iptables_ruleset(saved.text, source=saved.command, namespace=ruleset.namespace, family=saved.family)
        )
    return rules_from(merge(*parts), mask=mask, namespace=ruleset.namespace)


class NamespaceNames:
    """Per namespace inode, its own id -> name table: a mark is only ever named from its namespace's rules."""

    def __init__(self, tables: Mapping[int, PolicyNames], namespaces: Mapping[int, str]) -> None:
        self.tables = dict(tables)
        self.namespaces = dict(namespaces)
        self.conflicts = tuple(c for t in self.tables.values() for c in t.conflicts)

    def label(self, policy_id: int, netns: int) -> str:
        table = self.tables.get(netns)
        return table.label(policy_id) if table is not None else PolicyNames(names={}).label(policy_id)

    def knows(self, policy_id: int, netns: int) -> bool:
        table = self.tables.get(netns)
        return policy_id == 0 or (table is not None and table.knows(policy_id))

    def namespace(self, netns: int) -> str:
        """The namespace's name under /run/netns, "host", or ``netns:<inode>`` for one the collector cannot name."""
        return self.namespaces.get(netns) or (f"netns:{netns}" if netns else "unknown")


class PolicyResolver:
    def __init__(
        self,
        *,
        mask: int,
        reader: RulesetReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_rebuild: Callable[[NamespaceNames], None] = lambda names: None,
    ) -> None:
        self._mask = mask
        self._reader = reader if reader is not None else NftRulesetReader()
        self._clock = clock
        self._on_rebuild = on_rebuild
        self._seen: tuple[Ruleset, ...] | None = None
        self._conflicts: frozenset[str] = frozenset()
        self.names = NamespaceNames({}, {})
        self.last_read = float("-inf")
        self.rebuilds = 0

    def refresh(self) -> bool:
        """Re-read every ruleset; rebuild the table if any changed. True when it was rebuilt."""
        self.last_read = self._clock()
        try:
            rulesets = tuple(self._reader.read_all())
        except OSError as exc:
            log.warning("cannot read nftables rulesets, keeping the previous policy names: %s", exc)
            return False
        if rulesets == self._seen:
            return False
        self._seen = rulesets
        tables = NamespaceNames(
            {r.inode: build_policy_names(namespace_rules(r, mask=self._mask)) for r in rulesets},
            {r.inode: r.namespace for r in rulesets},
        )
        self.names = tables
        conflicts = frozenset(tables.conflicts)
        for conflict in sorted(conflicts - self._conflicts):
            log.warning("policy mark conflict: %s", conflict)
        self._conflicts = conflicts
        self.rebuilds += 1
        log.info(
            "policy names rebuilt from %d rulesets: %d marks",
            len(rulesets),
            sum(len(t.names) for t in tables.tables.values()),
        )
        self._on_rebuild(tables)
        return True

    def refresh_if_older(self, seconds: float) -> bool:
        if self._clock() - self.last_read >= seconds:
            return self.refresh()
        return False
