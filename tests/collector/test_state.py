"""The state file: series and map bookkeeping saved and restored, ages advanced by the time the agent was down."""

from __future__ import annotations

from pathlib import Path

from collector.series import SeriesStore
from collector.state import AgentState, SavedSeries, load, save


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_round_trip_advances_ages_by_the_downtime(tmp_path: Path) -> None:
    path = tmp_path / "run" / "state.json"
    state = AgentState(
        program="abc",
        generation=7,
        pending=1,
        unplaced_seen=(3, 300),
        series=(SavedSeries("ns/p", "10.0.0.1", 5, 240, 1.5), SavedSeries("ns/p", "overflow", 2, 90, 0.0)),
        saved_at=1000.0,
    )
    save(path, state)
    got = load(path, wall=lambda: 1010.0)
    assert got is not None
    assert (got.program, got.generation, got.pending, got.unplaced_seen) == ("abc", 7, 1, (3, 300))
    assert [(s.policy, s.src_ip, s.packets, s.bytes, s.age) for s in got.series] == [
        ("ns/p", "10.0.0.1", 5, 240, 11.5),
        ("ns/p", "overflow", 2, 90, 10.0),
    ]
    assert not path.with_name("state.json.tmp").exists()


def test_missing_or_foreign_state_is_a_fresh_start(tmp_path: Path) -> None:
    assert load(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert load(tmp_path / "bad.json") is None
    (tmp_path / "other.json").write_text('{"format": 99}')
    assert load(tmp_path / "other.json") is None


def test_restored_series_continue_and_expire_on_their_own_clock() -> None:
    clock = Clock(500.0)
    store = SeriesStore(ttl=60, max_series=1, clock=clock)
    restored = store.restore(
        [
            ("a", "10.0.0.1", 5, 50, 10.0),
            ("a", "10.0.0.2", 1, 1, 5.0),
            ("b", "overflow", 2, 2, 1.0),
            ("c", "x", 1, 1, 61),
        ]
    )
    assert restored == 2  # one per-source series (the cap), one overflow; the one past its TTL stays gone
    store.add(policy="a", src_ip="10.0.0.1", packets=1, nbytes=10)
    assert [(s.policy, s.src_ip, s.packets, s.bytes) for s in store.samples()] == [
        ("a", "10.0.0.1", 6, 60),
        ("b", "overflow", 2, 2),
    ]
    clock.now += 59.5
    assert store.expire() == 1  # b's last drop was 1 s before the restart: 60.5 s ago now
    snapshot = store.snapshot()
    assert snapshot == [("a", "10.0.0.1", 6, 60, 59.5)]
