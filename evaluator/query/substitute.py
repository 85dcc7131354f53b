"""GlobalAlert ``substitutions``: named value sets a query uses as ``key IN ${name}``.

Calico documents ``substitutions: [{name, values: [...]}]`` and ``${name}`` in the query standing for the
set; expanding it into ``{"v1", "v2"}`` before parsing makes the set an ordinary ``SetSelector``, so the
OpenSearch DSL and the SQL compilers need nothing of their own. Values keep their wildcards (``web-*``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from evaluator.query.errors import QueryError

VARIABLE = re.compile(r"\$\{([^}]*)\}")


def quote(value: str) -> str:
    """``value`` as a double-quoted string of the query language."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def names(text: str) -> list[str]:
    """The ``${name}`` references in a query, in order."""
    return [m.group(1).strip() for m in VARIABLE.finditer(text)]


def expand(text: str, substitutions: Mapping[str, Sequence[str]]) -> str:
    """``text`` with every ``${name}`` replaced by the set of its values; an unknown name is a ``QueryError``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in substitutions:
            defined = ", ".join(sorted(substitutions)) or "none"
            raise QueryError(
                f"${{{name}}} is not a substitution of this alert (defined: {defined}); "
                f"add {{name: {name}, values: [...]}} to spec.substitutions",
                position=match.start(),
                query=text,
            )
        return "{" + ", ".join(quote(v) for v in substitutions[name]) + "}"

    return VARIABLE.sub(replace, text)
