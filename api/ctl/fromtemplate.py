"""``policywatchctl create globalalert NAME --from-template TEMPLATE [--set KEY=VALUE]... [--dry-run]``.

The template's spec is copied into a new GlobalAlert. Each ``--set`` either fills a ``<placeholder>`` blank
(KEY is the text between the brackets, with or without them: ``--set 'namespace=prod'`` fills
``<namespace>`` wherever it appears) or, when KEY is a spec field, sets that field (``--set severity=80``,
``--set lookback=20m``; the value read as a YAML scalar, so numbers stay numbers). A blank left unfilled, or
a KEY that is neither, is refused before anything is sent.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, TextIO

import yaml

from api.ctl.client import ApiClient, ClientError
from api.yamlio import dump_yaml
from evaluator.spec import SPEC_KEYS
from evaluator.spec_rules import PLACEHOLDER

API_VERSION = "projectcalico.org/v3"


class FromTemplateError(ValueError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type", metavar="TYPE", nargs="?", help="globalalert (with --from-template)")
    parser.add_argument("name", metavar="NAME", nargs="?", help="the new GlobalAlert's name")
    parser.add_argument("--from-template", metavar="TEMPLATE", default=None, help="GlobalAlertTemplate to copy")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="fill the template's <KEY> blanks, or set spec field KEY (repeatable)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the GlobalAlert as YAML; create nothing")


def parse_sets(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FromTemplateError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set namespace=prod")
        values[key.removeprefix("<").removesuffix(">")] = value
    return values


def placeholders(value: Any) -> list[str]:
    """The ``<blank>`` names in a spec, in order, each once."""
    found: list[str] = []
    if isinstance(value, str):
        found = [m.group(0)[1:-1] for m in PLACEHOLDER.finditer(value)]
    elif isinstance(value, list):
        found = [name for item in value for name in placeholders(item)]
    elif isinstance(value, dict):
        found = [name for item in value.values() for name in placeholders(item)]
    return list(dict.fromkeys(found))


def fill(value: Any, blanks: dict[str, str]) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: blanks.get(m.group(0)[1:-1], m.group(0)), value)
    if isinstance(value, list):
        return [fill(item, blanks) for item in value]
    if isinstance(value, dict):
        return {k: fill(v, blanks) for k, v in value.items()}
    return value


def alert_from_template(name: str, template: dict[str, Any], sets: dict[str, str]) -> dict[str, Any]:
    spec = dict(template.get("spec") or {})
    wanted = placeholders(spec)
    blanks = {k: v for k, v in sets.items() if k in wanted}
    fields = {k: v for k, v in sets.items() if k not in wanted}
    unknown = [k for k in fields if k not in SPEC_KEYS]
    if unknown:
        offered = ", ".join(f"<{w}>" for w in wanted) or "none"
        raise FromTemplateError(
            f"--set {', '.join(unknown)}: neither a blank of this template (blanks: {offered}) nor a spec field"
            f" ({', '.join(SPEC_KEYS)})"
        )
    spec = fill(spec, blanks)
    for key, raw in fields.items():
        spec[key] = _scalar(raw)
    left = placeholders(spec)
    if left:
        hint = " ".join(f"--set '{w}=...'" for w in left)
        raise FromTemplateError(f"template blanks left unfilled: {', '.join(f'<{w}>' for w in left)}; add {hint}")
    template_name = (template.get("metadata") or {}).get("name", "")
    return {
        "apiVersion": API_VERSION,
        "kind": "GlobalAlert",
        "metadata": {"name": name, "labels": {"policywatch.io/template": _label(template_name)}},
        "spec": spec,
    }


def _scalar(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, str | int | float | bool | list) or value is None else raw


def _label(value: str) -> str:
    """A template name as a label value (at most 63 alphanumerics, '-', '_' or '.')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")


def run_create(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if args.filename:
            raise FromTemplateError("give either -f FILE or TYPE NAME --from-template TEMPLATE, not both")
        base, _, group = (args.type or "").lower().partition(".")
        if base not in ("globalalert", "globalalerts") or not "projectcalico.org".startswith(group):
            raise FromTemplateError(f"create {args.type!r} NAME: only a globalalert can be made from a template")
        if not args.name or not args.from_template:
            raise FromTemplateError("usage: policywatchctl create globalalert NAME --from-template TEMPLATE")
        sets = parse_sets(args.set)
    except FromTemplateError as exc:
        print(f"policywatchctl create: {exc}", file=err)
        return 2
    client = ApiClient.from_args(args)
    try:
        template = client.request("GET", f"/globalalerttemplates/{args.from_template}").body
        alert = alert_from_template(args.name, template, sets)
        if args.dry_run:
            out.write(dump_yaml(alert))
            return 0
        response = client.request("POST", "/globalalerts", body=alert)
    except FromTemplateError as exc:
        print(f"policywatchctl create: {exc}", file=err)
        return 2
    except ClientError as exc:
        what = f'GlobalAlertTemplate "{args.from_template}"' if exc.status == 404 else f'GlobalAlert "{args.name}"'
        print(f"Failed to create {what}: {exc}", file=err)
        return 1
    finally:
        client.close()
    for warning in response.warnings:
        print(f'Warning: GlobalAlert "{args.name}": {warning}', file=err)
    print(f'Successfully created GlobalAlert "{args.name}" from GlobalAlertTemplate "{args.from_template}"', file=out)
    return 0
