"""iptables-save text (iptables-nft-save, iptables-legacy-save, and their ip6 twins) -> walkable chains.

iptables-nft stores MARK targets and comment matches as xt expressions, which ``nft -j`` shows only by name; its
own save command prints them in full, so those tables are read from here. iptables-legacy has no nft side at all.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass, field

from collector.marks import ALL_BITS, Chain, Cond, MarkMatch, MarkSet, MarkUnknown, Rule, Ruleset, Step, Verdict

log = logging.getLogger(__name__)

_HOOKS = {
    "PREROUTING": "prerouting",
    "INPUT": "input",
    "FORWARD": "forward",
    "OUTPUT": "output",
    "POSTROUTING": "postrouting",
}
# Netfilter priorities of the iptables tables (NF_IP_PRI_*), so walks meet them in the kernel's order.
_PRIORITY = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
# Targets that neither end the chain nor drop.
_NON_TERMINAL = {"MARK", "CONNMARK", "LOG", "NFLOG", "TRACE", "CT", "CLASSIFY", "DSCP", "TOS", "TTL", "HL", "AUDIT"}
_COUNTERS = re.compile(r"\s*\[\d+:\d+\]\s*$")


def strip_counters(text: str) -> str:
    """The save text without chain counters (``:INPUT ACCEPT [12:3400]``), so unchanged rules read unchanged."""
    return "\n".join(
        _COUNTERS.sub("", line) if line.startswith(":") else line
        for line in text.splitlines()
        if not line.startswith("#")
    )


def _value_mask(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0) & ALL_BITS, int(mask, 0) & ALL_BITS if mask else ALL_BITS


@dataclass
class _Table:
    name: str
    policies: dict[str, str] = field(default_factory=dict)
    lines: list[tuple[str, list[str]]] = field(default_factory=list)


def _parse_rule(args: list[str], chains: set[str]) -> tuple[list[Step], str | None]:
    steps: list[Step] = []
    comment: str | None = None
    negate = False
    verdict: Verdict | None = None
    i = 0
    while i < len(args):
        token = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if token == "!":
            negate = True
            i += 1
            continue
        if token == "-m" and nxt in ("mark", "comment"):
            i += 2
        elif token == "--mark":
            value, mask = _value_mask(nxt)
            steps.append(MarkMatch(mask=mask, values=(value & mask,), negate=negate))
            i += 2
        elif token == "--comment":
            comment = nxt
            i += 2
        elif token in ("-j", "-g"):
            target = nxt
            rest = args[i + 2 :]
            if token == "-g":
                verdict = Verdict("goto", target)
            elif target in ("DROP", "REJECT"):
                verdict = Verdict("drop")
            elif target == "ACCEPT":
                verdict = Verdict("accept")
            elif target == "RETURN":
                verdict = Verdict("return")
            elif target in chains:
                verdict = Verdict("jump", target)
            elif target == "MARK":
                steps.append(_mark_target(rest))
            elif target == "CONNMARK":
                if "--restore-mark" in rest:
                    steps.append(MarkUnknown())
            elif target not in _NON_TERMINAL:
                verdict = Verdict("accept")  # DNAT, MASQUERADE, ...: the table's walk ends there
            break
        elif token.startswith("-"):
            start = i
            i += 1
            # the option's values, up to the next option
            while i < len(args) and not args[i].startswith("-") and args[i] != "!":
                i += 1
            values = args[start + 1 : i]
            plain = not negate and token != "-m" and len(values) == 1
            steps.append(Cond(token, values[0]) if plain else Cond())
        else:
            i += 1
        negate = False
    if verdict is not None:
        steps.append(verdict)
    return steps, comment


def _mark_target(options: list[str]) -> Step:
    for flag, value in zip(options, options[1:], strict=False):
        if flag in ("--set-xmark", "--set-mark"):
            bits, mask = _value_mask(value)
            if flag == "--set-xmark":
                return MarkSet(keep=~mask & ALL_BITS, flip=bits)
            return MarkSet(keep=~mask & ALL_BITS, set_bits=bits)
        if flag == "--or-mark":
            return MarkSet(keep=ALL_BITS, set_bits=int(value, 0) & ALL_BITS)
        if flag == "--and-mark":
            return MarkSet(keep=int(value, 0) & ALL_BITS)
        if flag == "--xor-mark":
            return MarkSet(keep=ALL_BITS, flip=int(value, 0) & ALL_BITS)
    return MarkUnknown()


def iptables_ruleset(text: str, *, source: str, namespace: str, family: str = "ip") -> Ruleset:
    """One save command's output as chains; ``source`` (e.g. ``iptables-legacy-save``) names it in locations."""
    tables: list[_Table] = []
    current: _Table | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = _Table(line[1:])
            tables.append(current)
        elif current is None or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            current.policies[name] = rest.split()[0] if rest.split() else "-"
        elif line.startswith("-A "):
            try:
                words = shlex.split(line)
            except ValueError as exc:
                log.warning("%s in %s: unreadable line %r skipped: %s", source, namespace, line, exc)
                continue
            if len(words) >= 2:
                current.lines.append((words[1], words[2:]))
    chains: dict[tuple[str, str], Chain] = {}
    order: list[tuple[str, str]] = []
    for table in tables:
        table_key = f"{source} {table.name}"
        names = set(table.policies)
        rules: dict[str, list[Rule]] = {name: [] for name in table.policies}
        for number, (chain, args) in enumerate(table.lines, start=1):
            steps, comment = _parse_rule(args, names)
            location = f"{namespace}: {source} -t {table.name} -A {chain} (rule {number})"
            rules.setdefault(chain, []).append(Rule(steps=tuple(steps), comment=comment, location=location))
        for name, chain_rules in rules.items():
            policy = table.policies.get(name, "-")
            hook = _HOOKS.get(name) if policy != "-" else None
            key = (table_key, name)
            chains[key] = Chain(
                rules=tuple(chain_rules),
                hook=hook,
                priority=_PRIORITY.get(table.name, 0),
                policy_drop=policy == "DROP",
                family=family,
            )
            order.append(key)
    return Ruleset(chains=chains, order=tuple(order))
