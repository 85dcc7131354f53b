"""Bulk request bodies: identity, gzip or deflate, refused beyond the limit once decompressed."""

from __future__ import annotations

import zlib

from fastapi import Request

from api.middleware import BodyTooLarge

WEBHOOK_PATHS = frozenset({"/datasets/audit/webhook"})
READ_CHUNK = 64 * 1024


class BodyRefused(Exception):
    """A body that cannot be read: ``status`` 413 (too large), 415 (encoding) or 400 (corrupt)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_ingest_path(path: str) -> bool:
    """The paths that take bulk bodies or log documents (their own, larger limit)."""
    parts = path.split("/")
    document_api = len(parts) in (3, 4) and parts[2] in ("_doc", "_create")  # /{index}/_doc[/{id}]
    return path.endswith("/_bulk") or path in WEBHOOK_PATHS or document_api


async def read_ingest_body(request: Request, limit: int) -> bytes:
    """The request body decoded per Content-Encoding; BodyRefused beyond ``limit`` bytes (before or after
    decompression: a small gzip that inflates past the limit, a zip bomb, is refused as it inflates)."""
    try:
        raw = await request.body()
    except BodyTooLarge as exc:
        raise BodyRefused(413, f"request body larger than {limit} bytes; send smaller batches") from exc
    encodings = [e.strip().lower() for e in request.headers.get("content-encoding", "").split(",") if e.strip()]
    data = raw
    for encoding in reversed(encodings):  # the last applied is listed last
        data = _decode(data, encoding, limit)
    if len(data) > limit:
        raise BodyRefused(413, f"request body larger than {limit} bytes; send smaller batches")
    return data


def _decode(data: bytes, encoding: str, limit: int) -> bytes:
    if encoding == "identity":
        return data
    if encoding in ("gzip", "x-gzip"):
        return _inflate(data, zlib.MAX_WBITS | 16, limit, encoding)
    if encoding == "deflate":  # RFC 9110's deflate is zlib-wrapped; some clients send it raw
        try:
            return _inflate(data, zlib.MAX_WBITS, limit, encoding)
        except BodyRefused as exc:
            if exc.status != 400:
                raise
            return _inflate(data, -zlib.MAX_WBITS, limit, encoding)
    raise BodyRefused(415, f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or identity")


def _inflate(data: bytes, wbits: int, limit: int, encoding: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    pending = data
    try:
        while pending:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise BodyRefused(413, f"request body inflates beyond {limit} bytes ({encoding}); send smaller batches")
            pending = inflater.unconsumed_tail
            if inflater.eof:
                if inflater.unused_data.strip(b"\x00"):  # concatenated gzip members
                    pending = inflater.unused_data
                    inflater = zlib.decompressobj(wbits)
                    continue
                break
        if not inflater.eof:
            raise BodyRefused(400, f"{encoding} body is truncated")
    except zlib.error as exc:
        raise BodyRefused(400, f"{encoding} body is corrupt: {exc}") from exc
    return bytes(out)
