"""``labelSelector`` and ``fieldSelector`` as kube-apiserver parses them (``k8s.io/apimachinery/pkg/labels``
and ``fields``): ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``; fields by
``metadata.name`` (what ``kubectl get NAME -w`` and ``kubectl delete --wait`` send)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from api.http import ApiError

Match = Callable[[dict[str, Any]], bool]
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"[A-Za-z0-9_.-]*"
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_COMPARE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")
FIELDS = ("metadata.name",)


def _split(text: str) -> list[str]:
    """Requirements are comma-separated, except the commas inside ``in (...)``."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Match:
    if found := _SET.match(text):
        key, negate = found["key"], found["op"] == "notin"
        values = {v.strip() for v in found["values"].split(",") if v.strip()}
        return lambda labels: (labels.get(key) in values) != negate
    if found := _COMPARE.match(text):
        key, value, negate = found["key"], found["value"], found["op"] == "!="
        return lambda labels: (labels.get(key) == value) != negate
    if found := _EXISTS.match(text):
        key, negate = found["key"], bool(found["neg"])
        return lambda labels: (key in labels) != negate
    raise ApiError(
        400,
        "BadRequest",
        f"labelSelector: cannot parse {text.strip()!r}; use key=value, key!=value, key in (a,b), key notin (a), "
        "key or !key",
    )


def label_selector(text: str | None) -> Match:
    if not text:
        return lambda _obj: True
    requirements = [_requirement(p) for p in _split(text)]
    return lambda obj: all(r(obj["metadata"].get("labels") or {}) for r in requirements)


def field_selector(text: str | None) -> Match:
    if not text:
        return lambda _obj: True
    tests: list[Match] = []
    for part in _split(text):
        found = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not found or found[1] not in FIELDS:
            raise ApiError(
                400, "BadRequest", f"fieldSelector: {part.strip()!r} is not supported; only {', '.join(FIELDS)}=NAME"
            )
        tests.append(_name_test(found[3], negate=found[2] == "!="))
    return lambda obj: all(t(obj) for t in tests)


def _name_test(value: str, *, negate: bool) -> Match:
    return lambda obj: (obj["metadata"]["name"] == value) != negate


def selector(labels: str | None, fields: str | None) -> Match | None:
    """One predicate over rendered objects, or None when neither selector is given."""
    if not labels and not fields:
        return None
    by_labels, by_fields = label_selector(labels), field_selector(fields)
    return lambda obj: by_fields(obj) and by_labels(obj)
