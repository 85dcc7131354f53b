"""``?watch=true``: a stream of ``WatchEvent`` lines (``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR",
"object": ...}``) from a resourceVersion, read from the store's change log.

Without a resourceVersion (or with "0") the stream starts with an ADDED event per existing object, as
kube-apiserver does. A version older than the kept window ends the stream with an ERROR event carrying a
410 ``Expired`` Status, so clients list again. Each connection is bounded: it ends after
``timeoutSeconds`` (at most ``MAX_TIMEOUT_S``), reads at most ``BATCH`` changes per poll, and at most
``MAX_WATCHES`` run at once per process (more get 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.http import ApiError, dump_json
from api.kube.selectors import Match
from api.kube.table import table
from api.resources import Kind, render_object
from api.store import Change, Expired, ObjectStorePort

POLL_S = 0.25
DEFAULT_TIMEOUT_S = 1800
MAX_TIMEOUT_S = 1800
BOOKMARK_EVERY_S = 60.0
BATCH = 500
MAX_WATCHES = 100


@dataclass(frozen=True)
class WatchOptions:
    since: int | None  # None: start with the current objects as ADDED
    timeout_s: float
    bookmarks: bool
    match: Match | None
    table_include: str | None  # None: plain objects; else rows as Table with this includeObject


def options(
    *,
    resource_version: str | None,
    timeout_seconds: int | None,
    bookmarks: bool,
    match: Match | None,
    table_include: str | None,
) -> WatchOptions:
    since: int | None = None
    if resource_version not in (None, "", "0"):
        assert resource_version is not None
        if not (resource_version.isascii() and resource_version.isdigit()) or len(resource_version) > 18:
            raise ApiError(
                400,
                "BadRequest",
                f"resourceVersion={resource_version[:40]!r}: must be a resourceVersion this server returned",
            )
        since = int(resource_version)
    timeout = DEFAULT_TIMEOUT_S if timeout_seconds is None else min(max(timeout_seconds, 0), MAX_TIMEOUT_S)
    return WatchOptions(since, float(timeout), bookmarks, match, table_include)


class _Slots:
    def __init__(self) -> None:
        self.active = 0


def _slots(request: Request) -> _Slots:
    slots = getattr(request.app.state, "watch_slots", None)
    if slots is None:
        slots = request.app.state.watch_slots = _Slots()
    return slots


def watch_response(request: Request, store: ObjectStorePort, kind: Kind, opts: WatchOptions) -> StreamingResponse:
    slots = _slots(request)
    if slots.active >= MAX_WATCHES:
        raise ApiError(
            429, "TooManyRequests", f"{MAX_WATCHES} watches are open; retry later", headers={"Retry-After": "5"}
        )
    try:  # before the 200: a store without a change log (the cluster's, read-only) refuses here
        store.changes(after=opts.since if opts.since is not None else store.max_resource_version(), limit=1)
    except Expired:
        pass  # the stream's first event says so
    return StreamingResponse(_stream(store, kind, opts, slots), media_type="application/json")


def _event(kind: Kind, opts: WatchOptions, event_type: str, obj: dict[str, Any]) -> bytes:
    if opts.table_include is not None and event_type in ("ADDED", "MODIFIED", "DELETED"):
        obj = table(kind, [obj], include=opts.table_include)
    return dump_json({"type": event_type, "object": obj}) + b"\n"


def _with_status(store: ObjectStorePort, kind: Kind, changes: list[Change]) -> list[tuple[str, dict[str, Any]]]:
    """Each change's object; a live GlobalAlert with the status the scheduler wrote last."""
    names = [c.name for c in changes if c.type != "DELETED"] if not kind.template else []
    statuses = store.statuses(names)
    out: list[tuple[str, dict[str, Any]]] = []
    for change in changes:
        obj = dict(change.object)
        status = statuses.get(change.name)
        if status is not None and change.type != "DELETED":
            obj["status"] = status.to_dict()
        out.append((change.type, obj))
    return out


def _initial(store: ObjectStorePort, kind: Kind) -> tuple[int, list[dict[str, Any]]]:
    version = store.max_resource_version()  # first: a change after it is streamed, maybe twice
    page, _ = store.list_page()
    return version, [render_object(kind, stored, status) for stored, status in page]


async def _stream(store: ObjectStorePort, kind: Kind, opts: WatchOptions, slots: _Slots) -> AsyncIterator[bytes]:
    matches: Callable[[dict[str, Any]], bool] = opts.match or (lambda _obj: True)
    deadline = time.monotonic() + opts.timeout_s
    next_bookmark = time.monotonic() + BOOKMARK_EVERY_S
    slots.active += 1
    try:
        if opts.since is None:
            last, objects = await run_in_threadpool(_initial, store, kind)
            for obj in objects:
                if matches(obj):
                    yield _event(kind, opts, "ADDED", obj)
        else:
            last = opts.since
        while time.monotonic() < deadline:
            try:
                changes, read_at = await run_in_threadpool(store.changes, after=last, limit=BATCH)
            except Expired as exc:
                status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": str(exc), "reason": "Expired", "code": 410}  # fmt: skip
                yield _event(kind, opts, "ERROR", status)
                return
            events = await run_in_threadpool(_with_status, store, kind, changes)
            for event_type, obj in events:
                if matches(obj):
                    yield _event(kind, opts, event_type, obj)
            last = read_at
            if opts.bookmarks and opts.table_include is None and time.monotonic() >= next_bookmark:
                bookmark = {"kind": kind.kind, "apiVersion": "projectcalico.org/v3",
                            "metadata": {"resourceVersion": str(last)}}  # fmt: skip
                yield _event(kind, opts, "BOOKMARK", bookmark)
                next_bookmark = time.monotonic() + BOOKMARK_EVERY_S
            if len(changes) < BATCH:
                await asyncio.sleep(min(POLL_S, max(deadline - time.monotonic(), 0)))
    finally:
        slots.active -= 1
