"""The test renderer itself (tests/helm/gotemplate.py) behaves like Go's text/template on what the chart uses."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helm.gotemplate import ChartFail, Renderer, TemplateError, parse


def render(text: str, dot: Any) -> str:
    nodes, defines = parse(text)
    return Renderer(defines, dot).render(nodes, dot)


def test_trim_markers() -> None:
    assert render("a  \n  {{- .x -}}  \n  b", {"x": 1}) == "a1b"
    assert render("a {{ .x }} b", {"x": "y"}) == "a y b"


def test_if_else_if_else_and_truthiness() -> None:
    text = "{{ if .a }}A{{ else if .b }}B{{ else }}C{{ end }}"
    assert render(text, {"a": [1], "b": 1}) == "A"
    assert render(text, {"a": [], "b": 1}) == "B"
    assert render(text, {"a": {}, "b": 0}) == "C"
    assert render(text, {"a": "", "b": None}) == "C"


def test_with_changes_dot_and_range_over_list_and_map() -> None:
    assert render("{{ with .m }}{{ .k }}{{ end }}", {"m": {"k": "v"}}) == "v"
    assert render("{{ range .l }}[{{ . }}]{{ end }}", {"l": [1, 2]}) == "[1][2]"
    assert render("{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}", {"m": {"b": 2, "a": 1}}) == "a=1;b=2;"
    assert render("{{ range .l }}x{{ else }}empty{{ end }}", {"l": []}) == "empty"


def test_pipelines_functions_and_variables() -> None:
    dot = {"Values": {"n": "abc-", "list": ["a", "b"], "obj": {"k": [1]}}}
    assert render('{{ .Values.n | trimSuffix "-" | quote }}', dot) == '"abc"'
    assert render('{{ printf "%s-%s" .Values.n "x" | trunc 4 }}', dot) == "abc-"
    assert render('{{ join "," .Values.list }}', dot) == "a,b"
    assert render("{{- $v := .Values.n }}{{ $v }}", dot) == "abc-"
    assert render('{{- $v := "a" }}{{ if true }}{{ $v = "b" }}{{ end }}{{ $v }}', dot) == "b"
    assert render("k:{{ .Values.obj | toYaml | nindent 2 }}", dot) == "k:\n  k:\n  - 1"
    assert render("{{ default 5 .Values.missing }}", dot) == "5"
    assert render("{{ if gt (int .Values.num) 0 }}yes{{ else }}no{{ end }}", {"Values": {"num": 3}}) == "yes"


def test_define_and_include_with_root_variable() -> None:
    text = '{{- define "t" }}{{ .a }}/{{ $.b }}{{ end }}{{ include "t" .c }}'
    assert render(text, {"b": "root", "c": {"a": "inner"}}) == "inner/root"


def test_and_or_stop_early() -> None:
    assert render('{{ if and .m (index .m.data "k") }}y{{ else }}n{{ end }}', {"m": {}}) == "n"
    assert render("{{ or .a .b }}", {"a": "", "b": "x"}) == "x"


def test_errors_instead_of_guesses() -> None:
    with pytest.raises(TemplateError, match="nil pointer"):
        render("{{ .a.b.c }}", {"a": {}})
    with pytest.raises(TemplateError, match="not supported"):
        render("{{ sha256sum .a }}", {"a": "x"})
    with pytest.raises(TemplateError, match="missing"):
        render("{{ if .a }}x", {"a": 1})
    with pytest.raises(ChartFail, match="need x"):
        render('{{ required "need x" .x }}', {"x": ""})
