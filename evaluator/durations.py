"""Go duration strings (``time.ParseDuration``) as used by GlobalAlert ``period`` and ``lookback``.

A duration is a possibly signed sequence of decimal numbers, each with an optional fraction and a unit
suffix: "300ms", "-1.5h", "2h45m". Units: ns, us (µs, μs), ms, s, m, h. ``"0"`` alone is zero.
Python's ``timedelta`` holds microseconds, so nanosecond parts below 1 µs are truncated (toward zero).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

# Nanoseconds per unit; µ (U+00B5, micro sign) and μ (U+03BC, Greek mu) are both accepted, as in Go.
_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NUMBER = re.compile(r"\d+\.?\d*|\.\d+")
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
# Go refuses durations beyond int64 nanoseconds (about 290 years).
_MAX_NS = 2**63 - 1
EXAMPLES = '"300ms", "1h2m3s", "1.5h"'


class DurationError(ValueError):
    """A string that is not a Go duration; the message says why and shows valid forms."""


def parse_go_duration(text: str) -> timedelta:
    """Parse a Go duration string such as ``"1h2m3s"`` or ``"-1.5h"`` into a ``timedelta``."""
    if not isinstance(text, str):
        raise DurationError(f"expected a duration string such as {EXAMPLES}, got {type(text).__name__}")
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return timedelta(0)
    if not s:
        raise DurationError(f"empty duration; use a number with a unit, such as {EXAMPLES}")
    total_ns = Decimal(0)
    pos = 0
    while pos < len(s):
        match = _PART.match(s, pos)
        if match is None:
            rest = s[pos:]
            number = _NUMBER.match(rest)
            if number is None:
                reason = f"unexpected {rest!r}"
            elif number.end() == len(rest):
                reason = f"missing unit after {number.group(0)!r}"
            elif rest[number.end()].isspace():
                reason = "spaces are not allowed"
            else:
                reason = f"unknown unit in {rest!r}"
            raise DurationError(f"invalid duration {text!r}: {reason}; units are ns, us, ms, s, m, h (e.g. {EXAMPLES})")
        try:
            total_ns += Decimal(match.group(1)) * _UNIT_NS[match.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the regex only admits decimals
            raise DurationError(f"invalid duration {text!r}: bad number {match.group(1)!r}") from exc
        if total_ns > _MAX_NS:
            raise DurationError(f"invalid duration {text!r}: longer than Go's limit of about 290 years")
        pos = match.end()
    micros = int(total_ns // 1000)
    return timedelta(microseconds=sign * micros)


def format_go_duration(value: timedelta) -> str:
    """Format like Go's ``Duration.String()``: "1h2m3s", "5m0s", "300ms", "1.5µs", "0s"."""
    total_us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if total_us == 0:
        return "0s"
    sign = "-" if total_us < 0 else ""
    us = abs(total_us)
    if us < 1_000_000:
        if us < 1_000:
            return f"{sign}{us}\u00b5s"
        return f"{sign}{_trim(us, 1_000)}ms"
    hours, rem = divmod(us, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds = _trim(rem, 1_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{seconds}s"


def _trim(amount: int, unit: int) -> str:
    whole, frac = divmod(amount, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def _go_duration(value: object, *, positive: bool) -> timedelta:
    if isinstance(value, timedelta):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = parse_go_duration(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from exc
    else:
        raise ValueError(f"expected a duration such as 30s, 10m or 168h, not {value!r}")
    if positive and parsed <= timedelta(0):
        raise ValueError(f"{value!r} must be a positive duration such as 30s, 10m or 168h")
    if parsed < timedelta(0):
        raise ValueError(f"{value!r} must not be negative")
    return parsed


# Settings fields: a Go duration string (``90s``, ``5m``, ``168h``) from flags or the environment, parsed once at
# start into a timedelta; shown back in the same form.
Duration = Annotated[
    timedelta,
    BeforeValidator(lambda value: _go_duration(value, positive=False)),
    PlainSerializer(format_go_duration, return_type=str),
]
PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(lambda value: _go_duration(value, positive=True)),
    PlainSerializer(format_go_duration, return_type=str),
]
