"""``policywatchctl test -f alert.yaml [--at T | --from T --to T]``: dry run of a GlobalAlert.

Prints the events one run at ``--at`` (default now) would produce, or the runs every period from
``--from`` to ``--to``; nothing is stored on the server.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from api.ctl.client import ApiClient, ClientError, add_connection_args
from api.yamlio import DecodeError, dump_yaml, load_yaml_documents


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "test",
        help="dry-run a GlobalAlert: the events it would produce (nothing is stored)",
        description="Dry-run a GlobalAlert over the logs: at one time, or every period over a range.",
    )
    parser.add_argument("-f", "--filename", required=True, help="GlobalAlert YAML or JSON file ('-' for stdin)")
    parser.add_argument("--at", help="RFC 3339 time of the run (default now)")
    parser.add_argument("--from", dest="start", help="RFC 3339 first run of a replay")
    parser.add_argument("--to", dest="end", help="RFC 3339 end of a replay")
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    add_connection_args(parser)
    parser.set_defaults(handler=run_test)


def run_test(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if args.at and (args.start or args.end):
        err.write("policywatchctl test: use either --at or --from/--to\n")
        return 2
    if bool(args.start) != bool(args.end):
        err.write("policywatchctl test: --from and --to go together\n")
        return 2
    try:
        text = sys.stdin.read() if args.filename == "-" else open(args.filename, encoding="utf-8").read()
        documents = load_yaml_documents(text)
    except OSError as exc:
        err.write(f"policywatchctl test: cannot read {args.filename}: {exc.strerror}\n")
        return 1
    except DecodeError as exc:
        err.write(f"policywatchctl test: {args.filename}: {exc}\n")
        return 1
    if len(documents) != 1:
        err.write(f"policywatchctl test: {args.filename} must hold one GlobalAlert (found {len(documents)})\n")
        return 1
    params = {"at": args.at} if args.at else {"from": args.start, "to": args.end} if args.start else {}
    client = ApiClient.from_args(args)
    try:
        response = client.request("POST", "/globalalerts/test", body=documents[0], params=params)
    except ClientError as exc:
        err.write(f"policywatchctl test: {exc}\n")
        return 1
    finally:
        client.close()
    events: list[dict[str, Any]] = response.body["events"]
    if args.output == "json":
        out.write(json.dumps(response.body, indent=2) + "\n")
    elif args.output == "yaml":
        out.write(dump_yaml(response.body))
    else:
        out.write(table(events))
    return 0


def table(events: list[dict[str, Any]]) -> str:
    if not events:
        return "no events\n"
    rows = [("TIME", "SEVERITY", "DESCRIPTION", "RECORD")]
    rows += [
        (e["time"], str(e["severity"]), e["description"], json.dumps(e["record"], sort_keys=True)[:120]) for e in events
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}\n".rstrip() + "\n" for r in rows
    )
