"""Description templates: every ``${var}`` filled from the record (aggregated fields, metric value)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def format_value(value: Any) -> str:
    """How a value reads in a description: whole floats without ``.0``, lists/maps as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def lookup(record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """``record[name]`` or, for dotted names such as ``objectRef.namespace``, the nested value."""
    if name in record:
        return True, record[name]
    current: Any = record
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def fill(template: str, record: Mapping[str, Any]) -> str:
    """Replace every ``${name}`` found in ``record``; names the record lacks stay as written (spec
    validation warns about them), so a typo is visible in the event rather than silently blank."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        found, value = lookup(record, name)
        return format_value(value) if found else match.group(0)

    return _VARIABLE.sub(replace, template)
