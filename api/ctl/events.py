"""``policywatchctl get events``: the events alerts wrote, newest first, as a table or -o yaml|json|jsonpath.

Its own module so that columns (e.g. a dismissed state) can be added here alone.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from api.ctl.client import ApiClient, ClientError
from api.ctl.output import OutputError, check_output, write_data, write_table
from evaluator.durations import DurationError, parse_go_duration

NAMES = ("events", "event", "ev")
PAGE_SIZE = 1_000
COLUMNS = ("TIME", "ALERT", "SEVERITY", "SUMMARY", "DISMISSED")
NONE = "<none>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alert", default=None, help="events: only those of this GlobalAlert")
    parser.add_argument(
        "--since", default=None, help="events: only newer ones, as a duration ago (1h, 30m) or RFC 3339 time"
    )
    parser.add_argument("--limit", type=int, default=500, help="events: at most this many, newest first")
    parser.add_argument(
        "--dismissed",
        choices=("true", "false"),
        default=None,
        help="events: only dismissed (true) or only open (false) ones; both when not given",
    )


def since_time(value: str, *, now: datetime | None = None) -> datetime:
    """``--since``: a Go duration back from now, or an RFC 3339 time."""
    try:
        return (now or datetime.now(UTC)) - parse_go_duration(value)
    except DurationError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {value!r}: expected a duration such as 1h or 30m, or an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_get_events(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        output = check_output(args.output, allowed=("yaml", "json", "wide"))
        params: dict[str, Any] = {}
        if args.alert:
            params["alert"] = args.alert
        if args.since:
            params["since"] = since_time(args.since).isoformat().replace("+00:00", "Z")
        if args.dismissed:
            params["dismissed"] = args.dismissed
        if args.names:
            raise ValueError("events have no names; filter with --alert NAME and --since")
        if args.limit < 1:
            raise ValueError("--limit must be at least 1")
    except (OutputError, ValueError) as exc:
        print(f"policywatchctl get events: {exc}", file=err)
        return 2
    client = ApiClient.from_args(args)
    try:
        items = _fetch(client, params, args.limit)
    except ClientError as exc:
        print(f"Failed to list events: {exc}", file=err)
        return 1
    finally:
        client.close()
    if output in (None, "wide"):
        if not items:
            print("No events found.", file=err)
            return 0
        columns = COLUMNS if output is None else (*COLUMNS, "DISMISSED-AT", "DESCRIPTION")
        write_table(columns, [_row(e, output) for e in items], out)
    else:
        write_data({"kind": "EventList", "items": items}, output, out)
    return 0


def _fetch(client: ApiClient, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while len(items) < limit:
        page = {**params, "limit": min(PAGE_SIZE, limit - len(items)), "offset": offset}
        body = client.request("GET", "/events", params=page).body
        items.extend(body.get("items") or [])
        if body.get("next") is None:
            break
        offset = int(body["next"])
    return items


def _row(event: dict[str, Any], output: str | None) -> list[str]:
    row = [
        str(event.get("time", "")),
        str(event.get("alert", "")),
        str(event.get("severity", "")),
        str(event.get("summary") or event.get("description", "")),
    ]
    dismissed = event.get("dismissed") or {}
    row.append(str(dismissed.get("by") or NONE) if dismissed else NONE)
    if output == "wide":
        row += [str(dismissed.get("at") or NONE) if dismissed else NONE, str(event.get("description", ""))]
    return row
