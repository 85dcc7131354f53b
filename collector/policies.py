"""Keeps the mark id -> policy name table current as rulesets change, without restarting anything."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from collector.nft import PolicyNames, build_policy_names, mark_rules
from collector.rulesets import NftRulesetReader, Ruleset, RulesetReader

log = logging.getLogger(__name__)


class PolicyResolver:
    def __init__(
        self,
        *,
        mask: int,
        reader: RulesetReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_rebuild: Callable[[PolicyNames], None] = lambda names: None,
    ) -> None:
        self._mask = mask
        self._reader = reader if reader is not None else NftRulesetReader()
        self._clock = clock
        self._on_rebuild = on_rebuild
        self._seen: tuple[Ruleset, ...] | None = None
        self._conflicts: frozenset[str] = frozenset()
        self.names = PolicyNames(names={})
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
        rules = []
        for ruleset in rulesets:
            try:
                parsed = ruleset.parsed()
            except ValueError as exc:
                log.warning("nft JSON of %s is unreadable, skipped: %s", ruleset.namespace, exc)
                continue
            rules.extend(mark_rules(parsed, mask=self._mask, namespace=ruleset.namespace))
        self.names = build_policy_names(rules)
        conflicts = frozenset(self.names.conflicts)
        for conflict in sorted(conflicts - self._conflicts):
            log.warning("policy mark conflict: %s", conflict)
        self._conflicts = conflicts
        self.rebuilds += 1
        log.info("policy names rebuilt from %d rulesets: %d marks", len(rulesets), len(self.names.names))
        self._on_rebuild(self.names)
        return True

    def refresh_if_older(self, seconds: float) -> bool:
        if self._clock() - self.last_read >= seconds:
            return self.refresh()
        return False
