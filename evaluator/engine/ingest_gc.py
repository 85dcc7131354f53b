"""Bulk ingest with Python's cyclic garbage collector paused (``collector_paused``)."""

from __future__ import annotations

import gc
import threading
import time

# The longest the cyclic garbage collector stays paused by overlapping bulk requests before one of them,
# ending, runs a full collection (of what other code left meanwhile).
GC_PAUSE_MAX_S = 5.0


class _CollectorPause:
    """The cyclic garbage collector paused while bulk requests run (nested across threads).

    A request holds thousands of documents and their rows at once; their allocations trigger the
    collector again and again, and each of its full passes scans the whole heap (a third of the
    request's time). Ingest makes no reference cycles: what it allocates is freed by reference counting
    when the request ends. So the collector is off while any bulk request runs, on again when the last
    one ends, and a request ending after the collector has been off for ``GC_PAUSE_MAX_S`` (requests
    overlapping without a gap) collects everything once, so that other code's cycles are not left.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False  # the collector was on when the first request paused it
        self._since = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                self._since = time.monotonic()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        collect = False
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                if self._resume:
                    gc.enable()
            elif self._resume and time.monotonic() - self._since > GC_PAUSE_MAX_S:
                self._since = time.monotonic()
                collect = True
        if collect:
            gc.collect()


collector_paused = _CollectorPause()
