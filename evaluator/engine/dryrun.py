"""The dry run: what an alert would report at one time, or over a range of periods, writing nothing."""

from __future__ import annotations

from datetime import datetime

from evaluator.alerts import GlobalAlertSpec
from evaluator.engine.execute import DEFAULT_BUCKET_CAP, run
from evaluator.engine.instances import MemoryState, track
from evaluator.engine.logstore import LogStore
from evaluator.engine.model import Window
from evaluator.events import Event, utc

MAX_REPLAY_RUNS = 2_000


class DryRunError(ValueError):
    """The requested time or range cannot be replayed (the message says what would be right)."""


def dry_run_at(
    *, name: str, spec: GlobalAlertSpec, store: LogStore, at: datetime, bucket_cap: int = DEFAULT_BUCKET_CAP
) -> list[Event]:
    """Events of one run at ``at`` over ``(at - lookback, at]``, as if nothing were firing before."""
    return replay(name=name, spec=spec, store=store, start=at, end=at, bucket_cap=bucket_cap)


def replay(
    *,
    name: str,
    spec: GlobalAlertSpec,
    store: LogStore,
    start: datetime,
    end: datetime,
    bucket_cap: int = DEFAULT_BUCKET_CAP,
    max_runs: int = MAX_REPLAY_RUNS,
) -> list[Event]:
    """The runs at ``start``, ``start + period``, ... up to ``end`` with instance state carried between them
    (in memory): an instance that keeps firing is reported once, as the scheduler would."""
    start, end = utc(start), utc(end)
    if end < start:
        raise DryRunError(f"'to' ({end.isoformat()}) is before 'from' ({start.isoformat()}); swap them")
    runs = int((end - start) / spec.period) + 1
    if runs > max_runs:
        raise DryRunError(
            f"the range holds {runs} runs of period {spec.period}; at most {max_runs} are replayed: shorten the range"
        )
    memory = MemoryState()
    events: list[Event] = []
    for i in range(runs):
        at = start + i * spec.period
        result = run(spec, Window.ending_at(at, spec.lookback), store, bucket_cap=bucket_cap)
        transitions = track(
            alert=name,
            severity=spec.severity,
            at=at,
            result=result,
            firing=memory.firing,
            seen_hits=memory.seen_hits.keys(),
        )
        memory.apply(transitions, lookback=spec.lookback)
        events.extend(transitions.events)
    return events
