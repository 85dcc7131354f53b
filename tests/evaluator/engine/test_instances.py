from datetime import UTC, datetime, timedelta

from evaluator.engine.instances import Instance, MemoryState, track
from evaluator.engine.model import Finding, RunResult, Window

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = Window.ending_at(T0, timedelta(minutes=10))


def _result(*keys: str, per_hit: bool = False) -> RunResult:
    findings = tuple(
        Finding(key=k, record={"k": k}, description=f"d {k}", hit_time=T0 if per_hit else None) for k in keys
    )
    return RunResult(window=WINDOW, findings=findings, per_hit=per_hit, examined=len(findings))


def test_start_continue_resolve() -> None:
    state = MemoryState()
    first = track(alert="a", severity=5, at=T0, result=_result("x", "y"), firing=state.firing, seen_hits=())
    assert [e.record for e in first.events] == [{"k": "x"}, {"k": "y"}]
    assert all(e.severity == 5 and e.alert == "a" and e.time == T0 for e in first.events)
    state.apply(first, lookback=timedelta(minutes=10))
    at = T0 + timedelta(minutes=5)
    second = track(alert="a", severity=5, at=at, result=_result("y", "z"), firing=state.firing, seen_hits=())
    assert [e.record for e in second.events] == [{"k": "z"}]
    assert [f.key for f in second.continuing] == ["y"]
    assert [i.key for i in second.resolved] == ["x"]
    state.apply(second, lookback=timedelta(minutes=10))
    assert set(state.firing) == {"y", "z"}
    assert state.firing["y"].started == T0


def test_hits_are_reported_once_and_forgotten_after_lookback() -> None:
    state = MemoryState()
    lookback = timedelta(minutes=10)
    first = track(alert="a", severity=1, at=T0, result=_result("hit:1", per_hit=True), firing={}, seen_hits=())
    state.apply(first, lookback=lookback)
    again = track(
        alert="a",
        severity=1,
        at=T0 + timedelta(minutes=5),
        result=_result("hit:1", "hit:2", per_hit=True),
        firing={},
        seen_hits=state.seen_hits.keys(),
    )
    assert [e.key for e in again.events] == ["hit:2"]
    state.apply(again, lookback=lookback)
    state.apply(
        track(alert="a", severity=1, at=T0 + lookback, result=_result(per_hit=True), firing={}, seen_hits=()),
        lookback=lookback,
    )
    assert state.seen_hits == {}


def test_instance_aggregate_by_is_read_back_from_the_key() -> None:
    inst = Instance(alert="a", key='{"b":1,"a":"x"}', record={}, description="", started=T0, severity=1)
    assert inst.aggregate_by == ("b", "a")
    assert Instance(alert="a", key="", record={}, description="", started=T0, severity=1).aggregate_by == ()
