"""Validated query-parameter types: a bad value is a 400 naming the parameter, never a 500 deeper down."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

# Times the engine can compute with: windows reach back a lookback and replays forward a period from
# them, so the far ends of ``datetime`` (year 1 in +14:00 is before its minimum in UTC) are refused.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def in_utc_range(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC), between 1970 and 9000."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(
            f"time {value.isoformat()} is out of range: use an RFC 3339 time from "
            f"{EARLIEST.isoformat()} to before {LATEST.isoformat()}"
        )
    return utc


QueryTime = Annotated[datetime, AfterValidator(in_utc_range)]
