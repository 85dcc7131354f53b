"""A small renderer for the subset of Go text/template + Sprig that helm/policywatch uses, so its templates can be
rendered and checked in tests where helm itself cannot be installed.

Supported: ``{{- -}}`` trimming, comments, if/else if/else, with/else, range (lists and maps, with ``$k, $v :=``),
define/include, variables (``:=``, ``=``), pipelines and parenthesised sub-pipelines, ``.Files.Get``/``.Files.Glob``,
and the functions in ``FUNCTIONS``. Anything else raises ``TemplateError`` rather than guessing, and so does reading
a field of a missing value (as Go does): a template that renders here uses only what this file understands.
"""

from __future__ import annotations

import base64
import fnmatch
import posixpath
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(Exception):
    pass


class ChartFail(TemplateError):
    """``fail`` or ``required`` stopped the rendering (helm would print this message)."""


# -- parsing ----------------------------------------------------------------------------------------------------
_ACTION = re.compile(r"{{(-\s)?(.*?)(\s-)?}}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:\\.|[^"\\])*")
      | (?P<raw>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
      | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>:=|=|\(|\)|\||,)
    )""",
    re.VERBOSE,
)


@dataclass
class Node:
    kind: str  # text, action, if, with, range, define
    text: str = ""
    tokens: list[tuple[str, str]] = field(default_factory=list)
    branches: list[tuple[list[tuple[str, str]], list[Node]]] = field(default_factory=list)
    else_body: list[Node] = field(default_factory=list)


def tokenize(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    source = source.strip()
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"cannot read action near {source[pos : pos + 30]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(source) and source[pos].isspace():
            pos += 1
    return tokens


def _pieces(text: str) -> list[tuple[str, str]]:
    """('text', s) and ('action', s) pieces, with {{- and -}} trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(text):
        chunk = text[pos : match.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if match.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        out.append(("action", match.group(2).strip()))
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = text[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def parse(text: str) -> tuple[list[Node], dict[str, list[Node]]]:
    defines: dict[str, list[Node]] = {}
    pieces = _pieces(text)
    index = 0

    def block(stop: set[str]) -> tuple[list[Node], str, list[tuple[str, str]]]:
        nonlocal index
        body: list[Node] = []
        while index < len(pieces):
            kind, content = pieces[index]
            index += 1
            if kind == "text":
                if content:
                    body.append(Node("text", text=content))
                continue
            if content.startswith("/*"):
                if not content.endswith("*/"):
                    raise TemplateError(f"unterminated comment {content[:30]!r}")
                continue
            tokens = tokenize(content)
            word = tokens[0][1] if tokens and tokens[0][0] == "ident" else ""
            if word in stop:
                return body, word, tokens[1:]
            if word in {"if", "with"}:
                node = Node(word)
                cond = tokens[1:]
                while True:
                    inner, ended, rest = block({"else", "end"})
                    node.branches.append((cond, inner))
                    if ended == "end":
                        break
                    if rest and rest[0] == ("ident", word):
                        cond = rest[1:]
                        continue
                    if rest:
                        raise TemplateError(f"unsupported 'else {rest[0][1]}' inside {word}")
                    node.else_body, ended, _ = block({"end"})
                    break
                body.append(node)
            elif word == "range":
                node = Node("range", tokens=tokens[1:])
                inner, ended, _ = block({"else", "end"})
                node.branches.append((tokens[1:], inner))
                if ended == "else":
                    node.else_body, _, _ = block({"end"})
                body.append(node)
            elif word == "define":
                name = tokens[1][1]
                inner, _, _ = block({"end"})
                defines[_string(name)] = inner
            elif word in {"template", "block", "end", "else"}:
                raise TemplateError(f"unexpected or unsupported '{word}'")
            else:
                body.append(Node("action", tokens=tokens))
        if stop:
            raise TemplateError(f"missing {{{{ end }}}} (expected one of {sorted(stop)})")
        return body, "", []

    nodes, _, _ = block(set())
    return nodes, defines


def _string(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    if literal.startswith('"'):
        return str(bytes(literal[1:-1], "utf-8").decode("unicode_escape"))
    raise TemplateError(f"expected a string, got {literal!r}")


# -- values and functions ---------------------------------------------------------------------------------------
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


class Files:
    """Helm's .Files: the chart's files (templates/ excluded)."""

    def __init__(self, chart_dir: Path) -> None:
        self._dir = chart_dir

    def Get(self, path: str) -> str:  # noqa: N802 - Helm's name
        target = self._dir / path
        return target.read_text() if target.is_file() else ""

    def Glob(self, pattern: str) -> dict[str, str]:  # noqa: N802 - Helm's name
        paths = sorted(
            str(p.relative_to(self._dir)) for p in self._dir.rglob("*") if p.is_file() and "templates" not in p.parts
        )
        return {p: self.Get(p) for p in paths if fnmatch.fnmatchcase(p, pattern)}


# -- evaluation -------------------------------------------------------------------------------------------------
class Renderer:
    def __init__(self, defines: Mapping[str, list[Node]], root: Any) -> None:
        self.defines = dict(defines)
        self.root = root

    def render(self, nodes: list[Node], dot: Any, scopes: list[dict[str, Any]] | None = None) -> str:
        scopes = scopes if scopes is not None else [{"$": self.root}]
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                value = self.pipeline(node.tokens, dot, scopes)
                if not _is_declaration(node.tokens):
                    out.append(to_text(value))
            elif node.kind in {"if", "with"}:
                for cond, body in node.branches:
                    scopes.append({})
                    value = self.pipeline(cond, dot, scopes)
                    if truthy(value):
                        out.append(self.render(body, value if node.kind == "with" else dot, scopes))
                        scopes.pop()
                        break
                    scopes.pop()
                else:
                    out.append(self.render(node.else_body, dot, scopes))
            elif node.kind == "range":
                out.append(self._range(node, dot, scopes))
        return "".join(out)

    def _range(self, node: Node, dot: Any, scopes: list[dict[str, Any]]) -> str:
        tokens = node.tokens
        names: list[str] = []
        if ("op", ":=") in tokens:
            cut = tokens.index(("op", ":="))
            names = [t[1] for t in tokens[:cut] if t[0] == "var"]
            tokens = tokens[cut + 1 :]
        items = self.pipeline(tokens, dot, scopes)
        pairs: list[tuple[Any, Any]]
        if isinstance(items, dict):
            pairs = sorted(items.items())
        elif isinstance(items, list | tuple):
            pairs = list(enumerate(items))
        elif items is None:
            pairs = []
        else:
            raise TemplateError(f"range over {type(items).__name__}")
        if not pairs:
            return self.render(node.else_body, dot, scopes)
        out = []
        for key, value in pairs:
            scope: dict[str, Any] = {}
            if len(names) == 1:
                scope[names[0]] = value
            elif len(names) == 2:
                scope[names[0]], scope[names[1]] = key, value
            scopes.append(scope)
            out.append(self.render(node.branches[0][1], value, scopes))
            scopes.pop()
        return "".join(out)

    def pipeline(self, tokens: list[tuple[str, str]], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        if _is_declaration(tokens):
            name, op = tokens[0][1], tokens[1][1]
            value = self.pipeline(tokens[2:], dot, scopes)
            if op == ":=":
                scopes[-1][name] = value
            else:
                for scope in reversed(scopes):
                    if name in scope:
                        scope[name] = value
                        break
                else:
                    raise TemplateError(f"assignment to undeclared variable {name}")
            return value
        commands: list[list[tuple[str, str]]] = [[]]
        depth = 0
        for token in tokens:
            if token == ("op", "("):
                depth += 1
            elif token == ("op", ")"):
                depth -= 1
            if token == ("op", "|") and depth == 0:
                commands.append([])
            else:
                commands[-1].append(token)
        result: Any = None
        for number, command in enumerate(commands):
            result = self.command(command, dot, scopes, piped=(result,) if number else ())
        return result

    def command(
        self, tokens: list[tuple[str, str]], dot: Any, scopes: list[dict[str, Any]], piped: tuple[Any, ...]
    ) -> Any:
        if not tokens:
            raise TemplateError("empty command")
        operands = self._operands(tokens)
        head = operands[0]
        if len(head) == 1 and head[0][0] == "ident" and head[0][1] not in {"true", "false", "nil"}:
            name = head[0][1]
            if name in {"and", "or"} and not piped:
                # Go 1.18+ stops at the first operand that decides the result.
                value: Any = None
                for operand in operands[1:]:
                    value = self.operand(operand, dot, scopes)
                    if truthy(value) != (name == "and"):
                        break
                return value
            args = [self.operand(o, dot, scopes) for o in operands[1:]] + list(piped)
            if name == "include":
                template, context = args
                if template not in self.defines:
                    raise TemplateError(f"include of undefined template {template!r}")
                return self.render(self.defines[template], context, [{"$": self.root}])
            if name not in FUNCTIONS:
                raise TemplateError(f"function {name!r} is not supported by this renderer")
            return FUNCTIONS[name](*args)
        head_value = self.operand(head, dot, scopes)
        args = [self.operand(o, dot, scopes) for o in operands[1:]] + list(piped)
        if callable(head_value):
            return head_value(*args)
        if args:
            raise TemplateError(f"{head} is not a function but was given arguments")
        return head_value

    @staticmethod
    def _operands(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        operands: list[list[tuple[str, str]]] = []
        depth = 0
        for token in tokens:
            if depth == 0:
                operands.append([token])
            else:
                operands[-1].append(token)
            if token == ("op", "("):
                depth += 1
            elif token == ("op", ")"):
                depth -= 1
        return operands

    def operand(self, tokens: list[tuple[str, str]], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind, text = tokens[0]
        if kind == "op" and text == "(":
            return self.pipeline(tokens[1:-1], dot, scopes)
        if kind in {"str", "raw"}:
            return _string(text)
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}.get(text, text)
        if kind == "field":
            return dot if text == "." else _walk(dot, text.lstrip(".").split("."), text)
        if kind == "var":
            name, *path = text.split(".")
            for scope in reversed(scopes):
                if name in scope:
                    return _walk(scope[name], path, text)
            raise TemplateError(f"undefined variable {name}")
        raise TemplateError(f"unexpected {text!r}")


def _is_declaration(tokens: list[tuple[str, str]]) -> bool:
    return (
        len(tokens) > 2
        and tokens[0][0] == "var"
        and "." not in tokens[0][1]
        and tokens[1]
        in {
            ("op", ":="),
            ("op", "="),
        }
    )


def _walk(value: Any, path: list[str], where: str) -> Any:
    for part in path:
        if value is None:
            raise TemplateError(f"nil pointer evaluating {where}: no {part!r} in a missing value")
        if isinstance(value, dict):
            value = value.get(part)
        else:
            value = getattr(value, part, None)
    return value


# -- helm -------------------------------------------------------------------------------------------------------
def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Rendered:
    manifests: dict[str, list[dict[str, Any]]]  # template file -> its YAML documents
    notes: str

    def all(self) -> list[dict[str, Any]]:
        return [doc for docs in self.manifests.values() for doc in docs]

    def find(self, kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
        return [d for d in self.all() if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def render_chart(
    chart_dir: Path,
    overlay: Mapping[str, Any] | None = None,
    *,
    release: str = "policywatch",
    namespace: str = "policywatch",
) -> Rendered:
    """What ``helm template <release> <chart> -n <namespace> -f overlay`` would print, split per template."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = _merge(yaml.safe_load((chart_dir / "values.yaml").read_text()), overlay or {})
    root = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion", "")},
        "Files": Files(chart_dir),
    }
    templates = sorted((chart_dir / "templates").iterdir())
    defines: dict[str, list[Node]] = {}
    parsed: dict[str, list[Node]] = {}
    for path in templates:
        nodes, found = parse(path.read_text())
        defines.update(found)
        parsed[path.name] = nodes
    renderer = Renderer(defines, root)
    manifests: dict[str, list[dict[str, Any]]] = {}
    notes = ""
    for name, nodes in parsed.items():
        if name.startswith("_"):
            continue
        text = renderer.render(nodes, root)
        if name == "NOTES.txt":
            notes = text
            continue
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as err:
            raise TemplateError(f"{name} renders to invalid YAML: {err}\n{text}") from None
        manifests[name] = docs
    return Rendered(manifests, notes)
