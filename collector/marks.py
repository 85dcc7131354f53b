"""Which marks reach which dropping rule: a walk over one namespace's rules, whatever wrote them.

nftables JSON (collector/nft.py) and iptables-save text (collector/iptables.py) are both turned into the few
steps below; the walk follows each base chain's rules in order, through jumps, gotos and verdict maps, and on into
the base chains a packet meets later (a mark set in mangle PREROUTING is still there in filter FORWARD). It tracks
what is known of the packet's mark along each path: set by a rule, or learned from a rule's ``meta mark``/``-m mark``
match. Where a path ends in a drop, the mark's bits under the collector's mask are the policy id the BPF program
will read, and the policy label is the dropping rule's comment, else the comment of the rule that set the mark.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

log = logging.getLogger(__name__)

ALL_BITS = 0xFFFFFFFF
# Bounds on the walk: nftables itself refuses jumps deeper than 16; states per chain entry are deduplicated.
MAX_DEPTH = 16
MAX_STATES = 256


@dataclass(frozen=True)
class Cond:
    """A match the walk cannot decide (addresses, ports, conntrack state, ...): the rule may or may not apply.

    An equality (``udp dport 7025``) carries its ``key`` and ``value``: a path that went through it cannot then
    meet ``udp dport 7026``, so one shape's mark does not leak into the next shape's rules.
    """

    key: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class MarkMatch:
    """``(mark & mask) == value`` for one of ``values`` (``!=`` when ``negate``)."""

    mask: int
    values: tuple[int, ...]
    negate: bool = False


@dataclass(frozen=True)
class MarkSet:
    """``mark = ((mark & keep) | set_bits) ^ flip``: every nft and iptables MARK form fits this."""

    keep: int
    set_bits: int = 0
    flip: int = 0


@dataclass(frozen=True)
class MarkUnknown:
    """The mark is set from something the walk cannot know (``ct mark``, CONNMARK --restore-mark, a map)."""


@dataclass(frozen=True)
class Verdict:
    kind: str  # drop, accept, jump, goto, return, continue
    target: str | None = None


@dataclass(frozen=True)
class VerdictMap:
    """``... vmap { key : verdict, ... }``: one of the verdicts, or none (no element matched)."""

    verdicts: tuple[Verdict, ...]


Step = Cond | MarkMatch | MarkSet | MarkUnknown | Verdict | VerdictMap


@dataclass(frozen=True)
class Rule:
    steps: tuple[Step, ...]
    comment: str | None
    location: str  # "<namespace>: <source> <table> <chain> handle <n>", for logs


@dataclass(frozen=True)
class Chain:
    """A chain of one table. Base chains have a hook; the others are reached by jump/goto/vmap."""

    rules: tuple[Rule, ...]
    hook: str | None = None
    priority: int = 0
    policy_drop: bool = False
    family: str = "ip"


# Later hooks a packet can meet after leaving a base chain of this hook (accepted, or fallen off its end).
_NEXT_HOOKS: Mapping[str, tuple[str, ...]] = {
    "ingress": ("prerouting",),
    "prerouting": ("input", "forward"),
    "forward": ("postrouting",),
    "output": ("postrouting",),
    "postrouting": ("egress",),
    "input": (),
    "egress": (),
}


@dataclass(frozen=True)
class Ruleset:
    """All chains of one namespace, keyed (table key, chain name); table key e.g. ``nft inet filter``."""

    chains: Mapping[tuple[str, str], Chain]
    order: tuple[tuple[str, str], ...] = ()  # base chains in listing order


@dataclass(frozen=True)
class MarkState:
    """What one path knows of the mark: ``value`` on the ``known`` bits, and the rule that last set it."""

    value: int = 0
    known: int = 0
    touched: bool = False  # set or learned by a rule; an untouched mark is whatever the packet came with
    setter_comment: str | None = None
    setter_at: str | None = None
    facts: frozenset[tuple[str, str]] = frozenset()  # equalities this path has passed

    def holds(self, step: Cond) -> MarkState | None:
        """This state with ``step``'s equality learned, or None when the path already knows another value."""
        if step.key is None or step.value is None:
            return self
        for key, value in self.facts:
            if key == step.key:
                return self if value == step.value else None
        return replace(self, facts=self.facts | {(step.key, step.value)})

    def apply(self, step: MarkSet, rule: Rule) -> MarkState:
        value = ((self.value & step.keep) | step.set_bits) ^ step.flip
        known = (self.known | ~step.keep | step.set_bits) & ALL_BITS
        return MarkState(value & ALL_BITS, known, True, rule.comment, rule.location, self.facts)

    def matching(self, step: MarkMatch) -> tuple[list[MarkState], bool]:
        """(states on which the match holds, whether it holds on every packet of this state)."""
        if step.negate:
            if step.mask & ~self.known == 0:
                equal = any((self.value ^ v) & step.mask == 0 for v in step.values)
                return ([], False) if equal else ([self], True)
            return [self], False
        out: list[MarkState] = []
        certain = False
        for v in step.values:
            if (self.value ^ v) & step.mask & self.known:
                continue  # contradicts what this path knows
            if step.mask & ~self.known == 0:
                certain = True
            learned = (self.value & ~step.mask) | (v & step.mask)
            out.append(replace(self, value=learned & ALL_BITS, known=self.known | step.mask, touched=True))
        return out, certain


@dataclass(frozen=True)
class Attribution:
    """A path that ends in a drop with ``policy_id`` under the mask; ``name`` None when no comment names it."""

    policy_id: int
    name: str | None
    location: str  # the dropping rule
    setter_at: str | None


@dataclass
class _Walk:
    ruleset: Ruleset
    mask: int
    found: list[Attribution] = field(default_factory=list)
    seen: set[Attribution] = field(default_factory=set)
    warned: set[str] = field(default_factory=set)

    def drop(self, state: MarkState, comment: str | None, location: str) -> None:
        if not state.touched:
            return  # the packet's own mark, unknown here: nothing to name
        policy_id = state.value & self.mask
        if policy_id == 0:
            # a rule that tags and drops by itself but misses the mask is a mistake worth a warning; a drop by
            # some other mark (kube-proxy's 0x8000) is just not a policy drop
            if state.setter_at == location and location not in self.warned:
                self.warned.add(location)
                log.warning(
                    "rule %s sets no bit of the mark mask %#x; its drops count as unattributed", location, self.mask
                )
            return
        found = Attribution(policy_id, comment or state.setter_comment, location, state.setter_at)
        if found not in self.seen:
            self.seen.add(found)
            self.found.append(found)

    def chain(
        self, table: str, name: str, states: Iterable[MarkState], depth: int
    ) -> tuple[set[MarkState], set[MarkState]]:
        """Walk one chain: (states that reach its end or a return, states accepted)."""
        chain = self.ruleset.chains.get((table, name))
        alive = set(states)
        accepted: set[MarkState] = set()
        if chain is None or depth > MAX_DEPTH:
            return alive, accepted
        returned: set[MarkState] = set()
        for rule in chain.rules:
            if not alive:
                break
            nxt: set[MarkState] = set()
            for state in alive:
                paths, always = self._through(rule, state)
                if not always:
                    nxt.add(state)
                for after, verdict in paths:
                    self._verdict(table, rule, after, verdict, depth, nxt, returned, accepted)
            alive = set(list(nxt)[:MAX_STATES]) if len(nxt) > MAX_STATES else nxt
        return alive | returned, accepted

    def _verdict(
        self,
        table: str,
        rule: Rule,
        state: MarkState,
        verdict: Verdict | None,
        depth: int,
        nxt: set[MarkState],
        returned: set[MarkState],
        accepted: set[MarkState],
    ) -> None:
        if verdict is None or verdict.kind == "continue":
            nxt.add(state)
        elif verdict.kind == "drop":
            self.drop(state, rule.comment, rule.location)
        elif verdict.kind == "accept":
            accepted.add(state)
        elif verdict.kind == "return":
            returned.add(state)
        elif verdict.kind in ("jump", "goto") and verdict.target is not None:
            back, acc = self.chain(table, verdict.target, [state], depth + 1)
            accepted |= acc
            (nxt if verdict.kind == "jump" else returned).update(back)

    @staticmethod
    def _through(rule: Rule, state: MarkState) -> tuple[list[tuple[MarkState, Verdict | None]], bool]:
        """The states on which ``rule`` applies, each with its verdict; and whether it applies on every packet."""
        states = [state]
        always = True
        for step in rule.steps:
            if isinstance(step, Cond):
                always = False
                states = [kept for s in states if (kept := s.holds(step)) is not None]
            elif isinstance(step, MarkMatch):
                nxt: list[MarkState] = []
                for s in states:
                    matched, certain = s.matching(step)
                    nxt.extend(matched)
                    always = always and certain
                states = nxt
            elif isinstance(step, MarkSet):
                states = [s.apply(step, rule) for s in states]
            elif isinstance(step, MarkUnknown):
                states = [MarkState(facts=s.facts) for s in states]
            elif isinstance(step, Verdict):
                return [(s, step) for s in states], always
            elif isinstance(step, VerdictMap):
                paths: list[tuple[MarkState, Verdict | None]] = [(s, v) for s in states for v in step.verdicts]
                # no element matched: the rule goes on (and its later steps would apply; rare, ignored)
                return paths, False
        return [(s, None) for s in states], always


def attributions(ruleset: Ruleset, *, mask: int) -> list[Attribution]:
    """Every (policy id, dropping rule) a path through ``ruleset`` can reach, in the order first found."""
    walk = _Walk(ruleset, mask)
    base = [key for key in ruleset.order if ruleset.chains[key].hook]
    entries: dict[tuple[str, str], set[MarkState]] = {key: {MarkState()} for key in base}
    pending = list(base)
    while pending:
        key = pending.pop(0)
        chain = ruleset.chains[key]
        states = entries[key]
        ended, accepted = walk.chain(key[0], key[1], states, 0)
        if chain.policy_drop:
            for state in ended:
                walk.drop(state, None, f"{key[0]} {key[1]} policy drop")
            ended = set()
        leaving = ended | accepted
        for later in _successors(ruleset, key, base):
            grown = entries[later] | leaving
            if len(grown) > len(entries[later]) and len(grown) <= MAX_STATES:
                entries[later] = grown
                if later not in pending:
                    pending.append(later)
    return walk.found


def _successors(ruleset: Ruleset, key: tuple[str, str], base: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    chain = ruleset.chains[key]
    position = base.index(key)
    out = []
    for index, other_key in enumerate(base):
        other = ruleset.chains[other_key]
        if other_key == key or other.hook is None or chain.hook is None:
            continue
        same_hook_later = other.hook == chain.hook and (
            other.priority > chain.priority or (other.priority == chain.priority and index > position)
        )
        if same_hook_later or other.hook in _NEXT_HOOKS.get(chain.hook, ()):
            out.append(other_key)
    return out


def merge(*rulesets: Ruleset) -> Ruleset:
    """One namespace's chains from several sources (nft, iptables-nft-save, iptables-legacy-save), walked as one."""
    chains: dict[tuple[str, str], Chain] = {}
    order: list[tuple[str, str]] = []
    for ruleset in rulesets:
        chains.update(ruleset.chains)
        order.extend(k for k in ruleset.order if k not in order)
    return Ruleset(chains=chains, order=tuple(order))
