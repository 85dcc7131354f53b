"""The cyclic garbage collector is paused while bulk requests run, and on again after the last one."""

from __future__ import annotations

import gc
import threading

import pytest

import evaluator.engine.ingest_gc as ingest_gc
from evaluator.engine.ingest_gc import _CollectorPause


def test_paused_while_requests_overlap_and_on_after_the_last() -> None:
    pause = _CollectorPause()
    assert gc.isenabled()
    with pause:
        assert not gc.isenabled()
        done = threading.Event()

        def other() -> None:
            with pause:
                assert not gc.isenabled()
            done.set()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert done.is_set() and not gc.isenabled()  # the other request ended; this one still runs
    assert gc.isenabled()


def test_a_collector_off_before_stays_off() -> None:
    pause = _CollectorPause()
    gc.disable()
    try:
        with pause:
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_requests_collect_once_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    pause = _CollectorPause()
    collected: list[int] = []
    monkeypatch.setattr(ingest_gc, "GC_PAUSE_MAX_S", 0.0)
    monkeypatch.setattr(ingest_gc.gc, "collect", lambda *args: collected.append(1) or 0)
    with pause:
        with pause:
            pass  # ends while the outer one runs, the collector off for longer than the limit
        assert collected == [1] and not gc.isenabled()
    assert gc.isenabled()
