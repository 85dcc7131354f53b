"""Safe, bounded YAML and JSON decoding for request bodies and ``policywatchctl -f`` files.

YAML comes from untrusted clients: only plain data is accepted (no tags at all, not even the safe
``!!binary``/``!!set`` ones), aliases are limited (no "billion laughs"), and so are nesting depth and
the number of documents. Errors say what was wrong and where (line and column).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_DOCUMENTS = 1000
# The largest integer a JSON/YAML body may carry: every number of the API is compared as a float, and a
# longer literal would only overflow (or, past 4,300 digits, hit CPython's int parsing limit).
MAX_INT_DIGITS = 308


class DecodeError(ValueError):
    """The body or file is not acceptable JSON/YAML; the message names the place and the problem."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses tags, limits aliases and depth, and bounds the size of the document
    once aliases are expanded (the "billion laughs" attack reuses few aliases many times)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark
        where = f"YAML line {mark.line + 1}, column {mark.column + 1}"
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise DecodeError(f"{where}: more than {MAX_ALIASES} aliases (*ref); expand them")
            target = Composer.compose_node(self, parent, index)
            if target is not None and id(target) not in self._sizes:
                raise DecodeError(f"{where}: an alias refers to its own parent (recursive data)")
            return target
        if getattr(event, "tag", None) is not None:
            raise DecodeError(f"{where}: tag {event.tag!r} is not allowed; write plain values (no '!' tags)")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise DecodeError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        try:
            node = Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1
        if node is not None and id(node) not in self._sizes:
            self._sizes[id(node)] = self._expanded_size(node, where)
        if isinstance(node, MappingNode):
            _no_duplicate_keys(node)
        return node

    def _expanded_size(self, node: Node, where: str) -> int:
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            return 1
        size = 1
        for child in children:
            child_size = self._sizes.get(id(child))
            if child_size is None:
                raise DecodeError(f"{where}: an alias refers to its own parent (recursive data)")
            size += child_size
        if size > MAX_NODES:
            raise DecodeError(f"{where}: more than {MAX_NODES} values once aliases are expanded")
        return size

    def scan_flow_scalar_non_spaces(self, double: bool, start_mark: Any) -> list[str]:
        # PyYAML passes the number of a \x, \u or \U escape to chr() unchecked: beyond U+10FFFF it raises.
        try:
            chunks: list[str] = super().scan_flow_scalar_non_spaces(double, start_mark)
        except (OverflowError, ValueError) as exc:
            raise yaml.scanner.ScannerError(
                "while scanning a double-quoted scalar",
                start_mark,
                "an escape names no Unicode character (the largest is \\U0010FFFF)",
                self.get_mark(),
            ) from exc
        return chunks

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            mark = node.start_mark
            raise DecodeError(f"YAML line {mark.line + 1}, column {mark.column + 1}: {_too_long(digits)}")
        value: int = super().construct_yaml_int(node)
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _too_long(digits: int) -> str:
    return f"an integer of {digits} digits is too large; numbers must stay below 1e{MAX_INT_DIGITS}"


def _parse_json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise DecodeError(_too_long(digits))
    return int(text)


def _no_duplicate_keys(node: MappingNode) -> None:
    """A repeated key silently overrides the first in plain YAML; a typo then goes unseen. Refuse it."""
    seen: set[str] = set()
    for key, _value in node.value:
        if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                mark = key.start_mark
                raise DecodeError(f"YAML line {mark.line + 1}, column {mark.column + 1}: duplicate key {key.value!r}")
            seen.add(key.value)


def load_yaml_documents(text: str) -> list[Any]:
    """All documents of a (multi-document) YAML text; empty documents are dropped."""
    documents: list[Any] = []
    loader: _BoundedLoader | None = None
    try:
        # The reader refuses control characters (NUL, ESC, U+FFFE, ...) as soon as it is built.
        loader = _BoundedLoader(text)
        while loader.check_node():
            if len(documents) >= MAX_DOCUMENTS:
                raise DecodeError(f"more than {MAX_DOCUMENTS} YAML documents")
            document = loader.construct_document(loader.get_node())
            if document is not None:
                documents.append(check_strings(_plain(document)))
    except yaml.reader.ReaderError as exc:
        raise DecodeError(
            f"invalid YAML: character U+{exc.character if isinstance(exc.character, int) else ord(exc.character):04X} "
            f"at position {exc.position} is not allowed (control characters must be escaped in a double-quoted string)"
        ) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown place"
        raise DecodeError(f"invalid YAML at {where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise DecodeError(f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError(f"YAML nested deeper than {MAX_DEPTH} levels") from exc
    finally:
        if loader is not None:
            loader.dispose()
    return documents


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DecodeError(f"duplicate key {key!r} in a JSON object")
        out[key] = value
    return out


def load_json(text: str) -> Any:
    try:
        return check_strings(json.loads(text, object_pairs_hook=_json_object, parse_int=_parse_json_int))
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise DecodeError("JSON nested too deeply") from exc


def check_strings(value: Any) -> Any:
    """Refuse strings no database can store: NUL characters and unpaired UTF-16 surrogates
    (both reachable through JSON ``\\u`` escapes and YAML double-quoted escapes)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(str(key))
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise DecodeError(f"string {text[:40]!r} contains a NUL character; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DecodeError(
            f"string {text[:40]!r} contains an unpaired surrogate (\\u{ord(text[exc.start]):04x})"
        ) from exc


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"body is not UTF-8 (byte {exc.start}); send UTF-8 JSON or YAML") from exc


# libyaml's emitter when PyYAML was built with it (Debian's and PyPI's are): several times faster.
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def dump_yaml_documents(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _plain(value: Any) -> Any:
    """YAML timestamps become RFC 3339 strings, so decoded data is JSON-compatible."""
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return value


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    raise DecodeError(f"YAML mapping key {key!r} is not a plain value")
