"""Output formats of ``policywatchctl get``, as kubectl has them: a table (``-o wide`` for more columns),
``-o yaml|json``, ``-o name`` and ``-o jsonpath=TEMPLATE``.

A jsonpath template is kubectl's: text with ``{expression}`` blocks and ``{"literal"}`` strings, the
expressions relative to the object (``{.metadata.name}``) and evaluated by jsonpath-ng; several matches
print space-separated, strings raw and other values as JSON, a missing key as nothing (kubectl's
``--allow-missing-template-keys=true``). ``{range}``/``{end}`` are not supported: ``[*]`` covers most uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TextIO

from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from api.yamlio import dump_yaml

FORMATS = ("yaml", "json", "wide", "name")
OUTPUT_HELP = "yaml, json, wide, name or jsonpath=TEMPLATE (e.g. jsonpath='{.items[*].metadata.name}')"
_BLOCK = re.compile(r"\{((?:[^{}\"']|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')*)\}")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class OutputError(ValueError):
    """An ``-o`` value that cannot be used; the message says what would be right."""


def check_output(value: str | None, *, allowed: Sequence[str] = FORMATS) -> str | None:
    """``value`` if it is a known format (jsonpath templates parsed now, so errors come before any request)."""
    if value is None or value in allowed:
        return value
    if value.startswith("jsonpath="):
        compile_template(value.removeprefix("jsonpath="))
        return value
    raise OutputError(f"unknown output format {value!r}; valid: {', '.join(allowed)}, jsonpath=TEMPLATE")


def compile_template(template: str) -> list[str | Any]:
    """The template as literal strings and compiled jsonpath expressions, in order."""
    if not template:
        raise OutputError("jsonpath template is empty; e.g. jsonpath='{.metadata.name}'")
    parts: list[str | Any] = []
    last = 0
    for match in _BLOCK.finditer(template):
        parts.append(template[last : match.start()])
        parts.append(_block(match.group(1).strip()))
        last = match.end()
    rest = template[last:]
    if "{" in rest or "}" in rest:
        raise OutputError(f"jsonpath template {template!r}: unbalanced braces")
    parts.append(rest)
    return [p for p in parts if p != ""]


def _block(text: str) -> str | Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text[1:-1])
    if text.split(" ", 1)[0] in ("range", "end"):
        raise OutputError("jsonpath {range}...{end} is not supported; use [*], e.g. {.items[*].metadata.name}")
    expression = text if text.startswith("$") else "$" + (text if text.startswith((".", "[")) else "." + text)
    try:
        return parse_jsonpath(expression)
    except (JsonPathParserError, Exception) as exc:  # the parser raises bare Exceptions too
        raise OutputError(f"invalid jsonpath expression {{{text}}}: {exc}") from exc


def render_template(template: str, data: Any) -> str:
    out: list[str] = []
    for part in compile_template(template):
        if isinstance(part, str):
            out.append(part)
            continue
        out.append(" ".join(_scalar(m.value) for m in part.find(data)))
    return "".join(out)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def write_data(data: Any, output: str, out: TextIO) -> None:
    """``data`` as yaml, json or a jsonpath template."""
    if output == "json":
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    elif output == "yaml":
        out.write(dump_yaml(data))
    elif output.startswith("jsonpath="):
        out.write(render_template(output.removeprefix("jsonpath="), data))
    else:
        raise OutputError(f"output {output!r} is not a data format")


def write_table(columns: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    for line in [columns, *rows]:
        out.write("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() + "\n")
