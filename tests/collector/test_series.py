"""Series lifetime and the --max-series cap, with an injected clock."""

from __future__ import annotations

import pytest

from collector.series import OVERFLOW_SOURCE, Sample, SeriesStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_totals_accumulate_and_expire_after_ttl_then_restart_from_zero() -> None:
    clock = Clock()
    store = SeriesStore(ttl=60, max_series=10, clock=clock)
    store.add(policy="p", src_ip="10.0.0.1", packets=5, nbytes=300)
    clock.now += 30
    store.add(policy="p", src_ip="10.0.0.1", packets=2, nbytes=120)
    assert store.samples() == [Sample("p", "10.0.0.1", 7, 420)]
    clock.now += 59.9  # 59.9 s after the last drop: still there
    assert store.expire() == 0
    clock.now += 0.1  # 60 s after the last drop: gone
    assert store.expire() == 1
    assert store.samples() == []
    store.add(policy="p", src_ip="10.0.0.1", packets=1, nbytes=60)
    assert store.samples() == [Sample("p", "10.0.0.1", 1, 60)]


def test_each_series_has_its_own_deadline() -> None:
    clock = Clock()
    store = SeriesStore(ttl=10, max_series=10, clock=clock)
    store.add(policy="p", src_ip="a", packets=1, nbytes=1)
    clock.now += 5
    store.add(policy="p", src_ip="b", packets=1, nbytes=1)
    clock.now += 5
    store.expire()
    assert [s.src_ip for s in store.samples()] == ["b"]


def test_cap_sends_new_sources_to_the_policy_overflow_series() -> None:
    clock = Clock()
    store = SeriesStore(ttl=10, max_series=2, clock=clock)
    for i in range(5):
        store.add(policy="p", src_ip=f"10.0.0.{i}", packets=1, nbytes=100)
    store.add(policy="q", src_ip="10.0.0.9", packets=3, nbytes=300)
    store.add(policy="p", src_ip="10.0.0.0", packets=1, nbytes=100)  # an existing series still counts itself
    samples = {(s.policy, s.src_ip): (s.packets, s.bytes) for s in store.samples()}
    assert samples == {
        ("p", "10.0.0.0"): (2, 200),
        ("p", "10.0.0.1"): (1, 100),
        ("p", OVERFLOW_SOURCE): (3, 300),
        ("q", OVERFLOW_SOURCE): (3, 300),
    }
    assert store.capped_packets == 6
    assert sum(p for p, _ in samples.values()) == 9  # nothing lost to the cap
    clock.now += 10
    store.expire()
    store.add(policy="p", src_ip="10.0.0.7", packets=1, nbytes=1)  # slots freed by expiry are reusable
    assert [s.src_ip for s in store.samples()] == ["10.0.0.7"]


def test_zero_adds_nothing_and_bad_settings_are_refused() -> None:
    store = SeriesStore(ttl=1, max_series=1)
    store.add(policy="p", src_ip="x", packets=0, nbytes=0)
    assert len(store) == 0
    with pytest.raises(ValueError, match="ttl"):
        SeriesStore(ttl=0, max_series=1)
    with pytest.raises(ValueError, match="max_series"):
        SeriesStore(ttl=1, max_series=0)
