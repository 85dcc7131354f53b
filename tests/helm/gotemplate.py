"""A small renderer for the subset of Go text/template that helm/policywatch uses, so its templates can be rendered
and checked in tests where helm itself cannot be installed (functions in tests/helm/sprig.py, Helm's objects in
tests/helm/helmrender.py).

Supported: ``{{- -}}`` trimming, comments, if/else if/else, with/else, range (lists and maps, with ``$k, $v :=``),
define/include, variables (``:=``, ``=``), pipelines and parenthesised sub-pipelines, method calls such as
``.Files.Get``. Anything else raises ``TemplateError`` rather than guessing, and so does reading a field of a missing
value (as Go does): a template that renders here uses only what this renderer understands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.helm.sprig import FUNCTIONS, ChartFail, TemplateError, to_text, truthy

__all__ = ["ChartFail", "Node", "Renderer", "TemplateError", "parse", "tokenize"]

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
