"""Userspace series {policy, srcIP} -> (packets, bytes, last seen), expiring a TTL after their last drop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

OVERFLOW_SOURCE = "overflow"


@dataclass(frozen=True)
class Sample:
    policy: str
    src_ip: str
    packets: int
    bytes: int


class SeriesStore:
    """Thread-safe: the drain loop adds, the HTTP server reads.

    At most ``max_series`` per-source series exist; a drop from a new source past that cap counts under its
    policy's ``srcIP="overflow"`` series, which the cap does not limit (one per policy at most).
    """

    def __init__(self, *, ttl: float, max_series: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        self._ttl = ttl
        self._max = max_series
        self._clock = clock
        self._lock = threading.Lock()
        # (policy, srcIP) -> [packets, bytes, last_seen]
        self._series: dict[tuple[str, str], list[float]] = {}
        self._per_source = 0
        self.capped_packets = 0  # drops sent to an overflow series by the cap, since start

    def add(self, *, policy: str, src_ip: str, packets: int, nbytes: int) -> None:
        if packets <= 0 and nbytes <= 0:
            return
        now = self._clock()
        with self._lock:
            key = (policy, src_ip)
            entry = self._series.get(key)
            if entry is None and src_ip != OVERFLOW_SOURCE:
                if self._per_source >= self._max:
                    self.capped_packets += packets
                    key = (policy, OVERFLOW_SOURCE)
                    entry = self._series.get(key)
                else:
                    self._per_source += 1
            if entry is None:
                self._series[key] = [packets, nbytes, now]
            else:
                entry[0] += packets
                entry[1] += nbytes
                entry[2] = now

    def expire(self) -> int:
        """Drop series whose last drop is ``ttl`` or more seconds old; return how many went."""
        deadline = self._clock() - self._ttl
        with self._lock:
            stale = [key for key, entry in self._series.items() if entry[2] <= deadline]
            for key in stale:
                del self._series[key]
                if key[1] != OVERFLOW_SOURCE:
                    self._per_source -= 1
        return len(stale)

    def samples(self) -> list[Sample]:
        with self._lock:
            return [
                Sample(policy=p, src_ip=s, packets=int(e[0]), bytes=int(e[1]))
                for (p, s), e in sorted(self._series.items())
            ]

    def snapshot(self) -> list[tuple[str, str, int, int, float]]:
        """(policy, srcIP, packets, bytes, seconds since the last drop) of every series, for the state file."""
        now = self._clock()
        with self._lock:
            return [(p, s, int(e[0]), int(e[1]), now - e[2]) for (p, s), e in self._series.items()]

    def restore(self, series: list[tuple[str, str, int, int, float]]) -> int:
        """Series of a previous run, each ``age`` seconds past its last drop; those past the TTL stay gone."""
        now = self._clock()
        restored = 0
        with self._lock:
            for policy, src_ip, packets, nbytes, age in series:
                if age >= self._ttl or (policy, src_ip) in self._series:
                    continue
                if src_ip != OVERFLOW_SOURCE:
                    if self._per_source >= self._max:
                        continue
                    self._per_source += 1
                self._series[(policy, src_ip)] = [packets, nbytes, now - age]
                restored += 1
        return restored

    def __len__(self) -> int:
        with self._lock:
            return len(self._series)
