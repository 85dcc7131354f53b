"""``policywatchctl query``: compile a GlobalAlert query locally and print its OpenSearch DSL or SQL.

Exit 0 with JSON on stdout; exit 2 with the error and a caret under its position on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO, cast

from sqlalchemy import select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.engine.default import DefaultDialect

from evaluator.logstore import table_for
from evaluator.query import DATASETS, QueryError, compile_query, to_dsl, to_sql, unparse


def _dialect(name: str) -> Dialect:
    # Named parameters, so literal SQL shows % as itself rather than pyformat's %%.
    dialect_class = cast(type[DefaultDialect], make_url(f"{name}://").get_dialect())
    return dialect_class(paramstyle="named")


DIALECTS: dict[str, Dialect] = {name: _dialect(name) for name in ("sqlite", "postgresql")}
CARET_WINDOW = 100


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "query",
        help="compile a query to OpenSearch DSL or SQL (no server needed)",
        description="Parse and validate QUERY for a data set; print the OpenSearch query (or SQL) as JSON.",
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="data set the query runs against")
    parser.add_argument("--sql", action="store_true", help="print the embedded store's SQL instead of DSL")
    parser.add_argument(
        "--dialect", choices=sorted(DIALECTS), default="sqlite", help="SQL dialect for --sql (default sqlite)"
    )
    parser.add_argument("--template", action="store_true", help="allow a GlobalAlertTemplate's <placeholder> values")
    parser.add_argument("query", metavar="QUERY", help="the query text; - reads it from standard input")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    text: str = sys.stdin.read() if args.query == "-" else args.query
    try:
        expr = compile_query(text, args.dataset, placeholders=args.template)
        if args.sql:
            statement = select(table_for(args.dataset).c.record).where(to_sql(expr, args.dataset))
            compiled = statement.compile(dialect=DIALECTS[args.dialect], compile_kwargs={"literal_binds": True})
            result: dict[str, Any] = {"dataset": args.dataset, "query": unparse(expr), "sql": str(compiled)}
        else:
            result = to_dsl(expr, args.dataset)
    except QueryError as error:
        print(f"policywatchctl query: {error}", file=err)
        print(caret(error), file=err)
        return 2
    json.dump(result, out, indent=2, ensure_ascii=False)
    out.write("\n")
    return 0


def caret(error: QueryError) -> str:
    """The query (a window of it around the error when long) and a caret under the position."""
    text = error.query.replace("\n", " ").replace("\t", " ").replace("\r", " ")
    text = "".join(char if char.isprintable() else "?" for char in text)
    position = error.position
    if position is None:
        return text[: CARET_WINDOW * 2] + ("..." if len(text) > CARET_WINDOW * 2 else "")
    start = max(0, position - CARET_WINDOW)
    end = min(len(text), position + CARET_WINDOW)
    prefix = "..." if start else ""
    suffix = "..." if end < len(text) else ""
    return f"{prefix}{text[start:end]}{suffix}\n{' ' * (len(prefix) + position - start)}^"
