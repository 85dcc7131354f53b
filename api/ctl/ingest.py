"""``policywatchctl ingest --dataset D FILE``: send NDJSON log records to ``POST /datasets/D/_bulk``.

The file goes in chunks cut at line boundaries (each under the server's body limit), with a progress bar
on stderr; bad lines are reported with their line number in the file, good lines are kept. Each chunk is
stored whole by the server, and a chunk sent again stores nothing twice, so rerunning after a failure is safe.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, TextIO

import httpx

from api.ctl.client import ApiClient, ClientError, add_connection_args, error_text
from evaluator.vocabulary import DATASETS

CHUNK_BYTES = 512 * 1024
RETRIES = 5
MAX_RETRY_AFTER = 30.0
MAX_SHOWN_ERRORS = 20


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="send NDJSON flow/dns/audit log records to the embedded log store",
        description="Send NDJSON log records (one JSON object a line; '-' reads stdin) to the evaluator.",
    )
    parser.add_argument("--dataset", "-d", required=True, choices=DATASETS, help="which data set the records are")
    parser.add_argument("file", help="NDJSON file, or - for stdin")
    parser.add_argument("--chunk-bytes", type=int, default=CHUNK_BYTES, help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_connection_args(parser)
    parser.set_defaults(handler=run_ingest)


def chunks(stream: BinaryIO, limit: int) -> Iterator[tuple[bytes, int]]:
    """(chunk, lines in it): whole lines, each chunk at most ``limit`` bytes unless one line is longer."""
    buffer: list[bytes] = []
    size = 0
    for line in stream:
        if buffer and size + len(line) > limit:
            yield b"".join(buffer), len(buffer)
            buffer, size = [], 0
        buffer.append(line)
        size += len(line)
    if buffer:
        yield b"".join(buffer), len(buffer)


def _post(client: ApiClient, dataset: str, chunk: bytes) -> httpx.Response:
    """POST one chunk; a busy or unavailable store (429/503: nothing of the chunk was stored) is retried
    after its Retry-After, and a resent chunk stores nothing twice."""
    for attempt in range(1, RETRIES + 1):
        try:
            response = client.http.post(
                f"/datasets/{dataset}/_bulk", content=chunk, headers={"Content-Type": "application/x-ndjson"}
            )
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the evaluator at {client.server}: {exc}") from exc
        if response.status_code not in (429, 503) or attempt == RETRIES:
            return response
        try:
            delay = min(float(response.headers.get("retry-after", "1")), MAX_RETRY_AFTER)
        except ValueError:
            delay = 1.0
        time.sleep(max(delay, 0.0))
    raise AssertionError("unreachable")


def _bar(err: TextIO, done: int, total: int | None, ingested: int, failed: int) -> None:
    if total:
        fraction = min(1.0, done / total)
        filled = int(fraction * 30)
        err.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} {ingested:,} ingested, {failed:,} failed")
    else:
        err.write(f"\r{done:,} bytes sent, {ingested:,} ingested, {failed:,} failed")
    err.flush()


def run_ingest(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        stream: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        err.write(f"policywatchctl ingest: cannot read {args.file}: {exc.strerror}\n")
        return 1
    total = None if args.file == "-" else os.fstat(stream.fileno()).st_size
    client = ApiClient.from_args(args)
    sent = ingested = failed = line_offset = 0
    errors: list[str] = []
    try:
        for chunk, lines in chunks(stream, args.chunk_bytes):
            response = _post(client, args.dataset, chunk)
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            # 400 with a per-line report: none of the chunk's lines could be stored; the others go on.
            report = isinstance(body, dict) and isinstance(body.get("errors"), list) and "ingested" in body
            if not report or (response.status_code >= 400 and response.status_code != 400):
                raise ClientError(error_text(response.status_code, body), status=response.status_code)
            ingested += int(body["ingested"])
            failed += int(body["failed"])
            for e in body["errors"]:
                if len(errors) < MAX_SHOWN_ERRORS:
                    where = f" field {e['field']}" if e.get("field") else ""
                    errors.append(f"line {line_offset + e['line']}{where}: {e['reason']}")
            line_offset += lines
            sent += len(chunk)
            if not args.no_progress:
                _bar(err, sent, total, ingested, failed)
    except ClientError as exc:
        if not args.no_progress:
            err.write("\n")
        err.write(f"policywatchctl ingest: {exc}\n")
        return 1
    finally:
        client.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    if not args.no_progress:
        err.write("\n")
    for line in errors:
        err.write(f"  {line}\n")
    if failed > len(errors):
        err.write(f"  ... and {failed - len(errors)} more\n")
    out.write(f"{ingested} {args.dataset} records ingested, {failed} lines rejected\n")
    return 0 if failed == 0 else 1
