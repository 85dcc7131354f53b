"""``policywatchctl apply|create|replace|get|delete|load-templates`` for GlobalAlert(Template)s.

Files hold one or more YAML (or JSON) documents; ``-f -`` reads standard input, ``-f DIR`` the directory's
.yaml/.yml/.json files (``-R``: and its subdirectories'), ``-f`` may be given several times; a ``*List``
document stands for its items. Each object is handled on its own: a failure is reported with the server's
reasons and the rest go on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources as package_files
from pathlib import Path
from typing import Any, TextIO

from api.ctl import events, fromtemplate
from api.ctl.client import ApiClient, ClientError, add_connection_args
from api.ctl.output import OUTPUT_HELP, OutputError, check_output, write_data, write_table
from api.yamlio import DecodeError, load_yaml_documents

API_VERSION = "projectcalico.org/v3"
GROUP = "projectcalico.org"
PAGE_SIZE = 500


@dataclass(frozen=True)
class ResourceType:
    kind: str
    list_kind: str
    singular: str
    plural: str

    def path(self, name: str | None = None) -> str:
        return f"/{self.plural}" + (f"/{name}" if name is not None else "")


GLOBAL_ALERT = ResourceType("GlobalAlert", "GlobalAlertList", "globalalert", "globalalerts")
GLOBAL_ALERT_TEMPLATE = ResourceType(
    "GlobalAlertTemplate", "GlobalAlertTemplateList", "globalalerttemplate", "globalalerttemplates"
)
TYPES = (GLOBAL_ALERT, GLOBAL_ALERT_TEMPLATE)
BY_KIND = {t.kind: t for t in TYPES}
BY_LIST_KIND = {t.list_kind: t for t in TYPES}


class UsageError(Exception):
    pass


FILE_SUFFIXES = (".yaml", ".yml", ".json")


def resource_type(name: str) -> ResourceType:
    """Resolve a type name, case-insensitively: ``globalalert``, ``globalalerts``, ``globalalert.projectcalico.org``
    and its abbreviations (``globalalert.p``), and the same forms of ``globalalerttemplate``."""
    lowered = name.lower()
    base, _, group = lowered.partition(".")
    for rtype in TYPES:
        if base in (rtype.singular, rtype.plural) and (not group or GROUP.startswith(group)):
            return rtype
    valid = ", ".join(f"{t.singular}, {t.plural}, {t.plural}.{GROUP}" for t in TYPES)
    raise UsageError(f"unknown resource type {name!r}; valid: {valid} (and abbreviations such as globalalert.p)")


def register(subparsers: Any) -> None:
    for command, help_text in (
        ("apply", "create objects from files, or replace them when they exist"),
        (
            "create",
            "create objects from files (fails for names that exist), or: create globalalert NAME --from-template T",
        ),
        ("replace", "replace existing objects from files (honours metadata.resourceVersion)"),
    ):
        parser = subparsers.add_parser(command, help=help_text, description=help_text)
        _add_file_args(parser, required=command != "create")
        if command == "create":
            fromtemplate.add_arguments(parser)
        add_connection_args(parser)
        parser.set_defaults(handler=run_file_command, file_command=command)

    get = subparsers.add_parser(
        "get", help="show objects or events", description="Show one, several or all objects of a type, or events."
    )
    get.add_argument("type", metavar="TYPE", help="globalalert(s), globalalerttemplate(s) (aliases accepted) or events")
    get.add_argument("names", metavar="NAME", nargs="*", help="names (all objects when none)")
    get.add_argument("-o", "--output", default=None, help=OUTPUT_HELP)
    events.add_arguments(get)
    add_connection_args(get)
    get.set_defaults(handler=run_get)

    delete = subparsers.add_parser("delete", help="delete objects", description="Delete by TYPE NAME... or -f FILE.")
    delete.add_argument("type", metavar="TYPE", nargs="?", help="globalalert(s) or globalalerttemplate(s)")
    delete.add_argument("names", metavar="NAME", nargs="*", help="names to delete")
    _add_file_args(delete, required=False)
    add_connection_args(delete)
    delete.set_defaults(handler=run_delete)

    load = subparsers.add_parser(
        "load-templates",
        help="apply the ten GlobalAlertTemplates Calico's operator ships",
        description="Create or replace the built-in GlobalAlertTemplates (policy.*, network.*, dns.*).",
    )
    add_connection_args(load)
    load.set_defaults(handler=run_load_templates)


def _add_file_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=required,
        help="YAML/JSON file (several documents allowed), directory, or - for stdin; repeatable",
    )
    parser.add_argument(
        "-R", "--recursive", action="store_true", help="with -f DIR, also the files of its subdirectories"
    )


def expand_filenames(filenames: Iterable[str], *, recursive: bool) -> list[str]:
    """Each directory replaced by its .yaml/.yml/.json files, sorted by path (kubectl's order)."""
    out: list[str] = []
    for name in filenames:
        path = Path(name)
        if name != "-" and path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
            if not found:
                raise UsageError(f"{name}: no .yaml, .yml or .json files" + ("" if recursive else " (-R to recurse)"))
            out.extend(str(p) for p in found)
        else:
            out.append(name)
    return out


def read_all(filenames: Iterable[str], *, recursive: bool, stdin: TextIO | None = None) -> list[Any]:
    """The objects of every file, read before anything is sent (a broken file stops the command)."""
    objects: list[Any] = []
    for name in expand_filenames(filenames, recursive=recursive):
        objects.extend(read_documents(name, stdin))
    return objects


def builtin_templates_text() -> str:
    return package_files.files("api").joinpath("templates/globalalerttemplates.yaml").read_text(encoding="utf-8")


def read_documents(filename: str, stdin: TextIO | None = None) -> list[Any]:
    try:
        if filename == "-":
            text = (stdin or sys.stdin).read()
        else:
            with open(filename, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {filename}: {exc.strerror}") from exc
    try:
        documents = load_yaml_documents(text)
    except DecodeError as exc:
        raise UsageError(f"{filename}: {exc}") from exc
    objects: list[Any] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") in {*BY_LIST_KIND, "List"}:
            items = document.get("items") or []
            objects.extend(items if isinstance(items, list) else [items])
        else:
            objects.append(document)
    if not objects:
        raise UsageError(f"{filename}: no objects found")
    return objects


def _object_type(obj: Any) -> tuple[ResourceType, str]:
    if not isinstance(obj, dict):
        raise UsageError(f"expected an object with kind and metadata.name, got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind not in BY_KIND:
        raise UsageError(f"unsupported kind {kind!r}; expected GlobalAlert or GlobalAlertTemplate")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise UsageError(f"{kind} without metadata.name")
    return BY_KIND[kind], name


def _label(rtype: ResourceType, name: str) -> str:
    return f'{rtype.kind} "{name}"'


def _without_resource_version(obj: dict[str, Any]) -> dict[str, Any]:
    # apply means "latest wins": neither the version nor the uid (an incarnation) of the file is a precondition
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "uid")}
    return {**obj, "metadata": metadata}


def apply_objects(client: ApiClient, command: str, objects: Iterable[Any], *, out: TextIO, err: TextIO) -> int:
    failures = 0
    for obj in objects:
        try:
            rtype, name = _object_type(obj)
            if command == "create":
                response = client.request("POST", rtype.path(), body=obj)
                verb = "created"
            elif command == "replace":
                response = client.request("PUT", rtype.path(name), body=obj)
                verb = "replaced"
            else:
                try:
                    response = client.request("POST", rtype.path(), body=obj)
                    verb = "created"
                except ClientError as exc:
                    if exc.status != 409:
                        raise
                    response = client.request("PUT", rtype.path(name), body=_without_resource_version(obj))
                    verb = "configured"
            for warning in response.warnings:
                print(f"Warning: {_label(rtype, name)}: {warning}", file=err)
            print(f"Successfully {verb} {_label(rtype, name)}", file=out)
        except (ClientError, UsageError) as exc:
            failures += 1
            print(f"Failed to {command} {_describe(obj)}: {exc}", file=err)
    return 1 if failures else 0


def _describe(obj: Any) -> str:
    try:
        rtype, name = _object_type(obj)
    except UsageError:
        return "object"
    return _label(rtype, name)


def run_file_command(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.file_command == "create" and (args.from_template or args.type):
        return fromtemplate.run_create(args, out=out, err=err)
    try:
        if not args.filename:
            raise UsageError("give -f FILE, or: create globalalert NAME --from-template TEMPLATE [--set KEY=VALUE]")
        objects = read_all(args.filename, recursive=args.recursive)
    except UsageError as exc:
        print(f"policywatchctl {args.file_command}: {exc}", file=err)
        return 2
    client = ApiClient.from_args(args)
    try:
        return apply_objects(client, args.file_command, objects, out=out, err=err)
    finally:
        client.close()


def run_load_templates(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    objects = load_yaml_documents(builtin_templates_text())
    client = ApiClient.from_args(args)
    try:
        return apply_objects(client, "apply", objects, out=out, err=err)
    finally:
        client.close()


def run_get(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.type.lower() in events.NAMES:
        return events.run_get_events(args, out=out, err=err)
    try:
        rtype = resource_type(args.type)
        check_output(args.output)
        if args.alert or args.since or args.dismissed:
            raise UsageError(
                "--alert, --since and --dismissed filter events: policywatchctl get events --alert NAME --since 1h"
            )
    except (UsageError, OutputError) as exc:
        print(f"policywatchctl get: {exc}", file=err)
        return 2
    client = ApiClient.from_args(args)
    failures = 0
    items: list[dict[str, Any]] = []
    try:
        if args.names:
            for name in args.names:
                try:
                    items.append(client.request("GET", rtype.path(name)).body)
                except ClientError as exc:
                    failures += 1
                    print(f"Failed to get {_label(rtype, name)}: {exc}", file=err)
        else:
            items = list_all(client, rtype)
    except ClientError as exc:
        print(f"Failed to list {rtype.plural}: {exc}", file=err)
        return 1
    finally:
        client.close()
    if not items and not args.names and args.output in (None, "wide", "name"):
        print("No resources found.", file=err)  # kubectl's words, on stderr: stdout stays parseable
    elif items or args.output not in (None, "wide"):  # a table without rows prints no header line
        write_objects(rtype, items, args.output, single=len(args.names) == 1, out=out)
    return 1 if failures else 0


def list_all(client: ApiClient, rtype: ResourceType) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if token:
            params["continue"] = token
        body = client.request("GET", rtype.path(), params=params).body
        items.extend(body.get("items") or [])
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return items


def write_objects(
    rtype: ResourceType, items: list[dict[str, Any]], output: str | None, *, single: bool, out: TextIO
) -> None:
    if output == "name":
        for item in items:
            out.write(f"{rtype.singular}.{GROUP}/{(item.get('metadata') or {}).get('name', '')}\n")
        return
    if output is not None and output != "wide":
        data: Any = (
            items[0] if single and items else {"apiVersion": API_VERSION, "kind": rtype.list_kind, "items": items}
        )
        write_data(data, output, out)
        return
    columns = ["NAME"]
    rows: list[list[str]] = []
    if output == "wide":
        columns += ["DATASET", "SEVERITY", "PERIOD", "LOOKBACK", "METRIC", "CONDITION"]
        if rtype is GLOBAL_ALERT:
            columns += ["HEALTHY", "LAST EXECUTED"]
        columns += ["QUERY"]
    for item in items:
        spec = item.get("spec") or {}
        row = [str((item.get("metadata") or {}).get("name", ""))]
        if output == "wide":
            metric = spec.get("metric") or ""
            if metric and spec.get("field"):
                metric = f"{metric}({spec['field']})"
            condition = f"{spec.get('condition')} {spec.get('threshold')}" if spec.get("condition") else ""
            row += [
                str(spec.get("dataSet", "")),
                str(spec.get("severity", "")),
                str(spec.get("period", "")),
                str(spec.get("lookback", "")),
                metric,
                condition,
            ]
            if rtype is GLOBAL_ALERT:
                status = item.get("status") or {}
                row += [str(status.get("healthy", "")).lower(), str(status.get("lastExecuted", ""))]
            query = str(spec.get("query", ""))
            row += [query if len(query) <= 60 else query[:57] + "..."]
        rows.append(row)
    write_table(columns, rows, out)


def run_delete(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    targets: list[tuple[ResourceType, str]] = []
    try:
        if args.filename:
            if args.type or args.names:
                raise UsageError("give either -f FILE or TYPE NAME..., not both")
            targets = [_object_type(obj) for obj in read_all(args.filename, recursive=args.recursive)]
        else:
            if not args.type or not args.names:
                raise UsageError("usage: policywatchctl delete TYPE NAME... | -f FILE")
            rtype = resource_type(args.type)
            targets = [(rtype, name) for name in args.names]
    except UsageError as exc:
        print(f"policywatchctl delete: {exc}", file=err)
        return 2
    client = ApiClient.from_args(args)
    failures = 0
    try:
        for rtype, name in targets:
            try:
                client.request("DELETE", rtype.path(name))
                print(f"Successfully deleted {_label(rtype, name)}", file=out)
            except ClientError as exc:
                failures += 1
                print(f"Failed to delete {_label(rtype, name)}: {exc}", file=err)
    finally:
        client.close()
    return 1 if failures else 0
