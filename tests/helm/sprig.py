"""Sprig's and Go's template functions, as far as helm/policywatch uses them, and Go's value rules (truthiness,
printing). Part of the test renderer (tests/helm/gotemplate.py)."""

from __future__ import annotations

import base64
import posixpath
import re
import secrets
import string
from collections.abc import Callable
from typing import Any

import yaml


class TemplateError(Exception):
    pass


class ChartFail(TemplateError):
    """``fail`` or ``required`` stopped the rendering (helm would print this message)."""


def truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | dict | tuple):
        return len(value) > 0
    return True


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str | int):
        return str(value)
    raise TemplateError(f"printing a {type(value).__name__} directly; use toYaml: {value!r}")


def _indent(width: int, text: Any) -> str:
    pad = " " * int(width)
    return "\n".join(pad + line for line in to_text(text).split("\n"))


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _quote(*values: Any) -> str:
    return " ".join('"' + to_text(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)


def _printf(fmt: str, *args: Any) -> str:
    if re.search(r"%[^sdv%]", fmt):
        raise TemplateError(f"printf format {fmt!r}: only %s, %d, %v are supported here")
    return fmt.replace("%v", "%s") % tuple(to_text(a) if not isinstance(a, int) else a for a in args)


def _required(message: str, value: Any) -> Any:
    if not truthy(value):
        raise ChartFail(message)
    return value


def _fail(message: str) -> Any:
    raise ChartFail(message)


def _and(*values: Any) -> Any:
    for value in values:
        if not truthy(value):
            return value
    return values[-1]


def _or(*values: Any) -> Any:
    for value in values:
        if truthy(value):
            return value
    return values[-1]


def _index(container: Any, *keys: Any) -> Any:
    for key in keys:
        if container is None:
            raise TemplateError(f"index of a missing value with key {key!r}")
        container = container.get(key) if isinstance(container, dict) else container[int(key)]
    return container


def _rand_alnum(length: Any) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(int(length)))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "toYaml": _to_yaml,
    "quote": _quote,
    "default": lambda d, v=None: v if truthy(v) else d,
    "trunc": lambda n, s: to_text(s)[: int(n)],
    "trimSuffix": lambda suffix, s: to_text(s).removesuffix(suffix),
    "trimPrefix": lambda prefix, s: to_text(s).removeprefix(prefix),
    "printf": _printf,
    "replace": lambda old, new, s: to_text(s).replace(old, new),
    "contains": lambda sub, s: sub in to_text(s),
    "required": _required,
    "fail": _fail,
    "int": lambda v: int(v or 0),
    "float64": lambda v: float(v or 0),
    "gt": lambda a, b: a > b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "and": _and,
    "or": _or,
    "not": lambda v: not truthy(v),
    "empty": lambda v: not truthy(v),
    "join": lambda sep, items: sep.join(to_text(i) for i in (items or [])),
    "lookup": lambda *args: {},  # helm template (no cluster) answers lookups with an empty map
    "index": _index,
    "b64dec": lambda s: base64.b64decode(s).decode(),
    "randAlphaNum": _rand_alnum,
    "base": lambda p: posixpath.basename(p),
}
