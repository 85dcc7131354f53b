"""Entry point of ``policywatchctl``: each sub-command module registers its own parser."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from api.ctl import ingest, query, resources, test
from api.ctl.client import add_connection_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policywatchctl", description="Client of the policywatch evaluator (GlobalAlert API)."
    )
    add_connection_args(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    query.register(subparsers)
    resources.register(subparsers)
    ingest.register(subparsers)
    test.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
