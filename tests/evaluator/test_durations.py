"""Go duration strings: parsing as Go's time.ParseDuration does, formatting as Duration.String()."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.durations import DurationError, format_go_duration, parse_go_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("5m", timedelta(minutes=5)),
        ("1h2m3s", timedelta(hours=1, minutes=2, seconds=3)),
        ("300ms", timedelta(milliseconds=300)),
        ("-1.5h", -timedelta(minutes=90)),
        ("+2h45m", timedelta(hours=2, minutes=45)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("10us", timedelta(microseconds=10)),
        ("10\u00b5s", timedelta(microseconds=10)),
        ("10\u03bcs", timedelta(microseconds=10)),
        ("1500ns", timedelta(microseconds=1)),
        ("1h1h", timedelta(hours=2)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "m", "1d", "5 m", "1h 2m", "-", "1.2.3s", "--5m", "1e3s", "9999999999h"])
def test_refused(text: str) -> None:
    with pytest.raises(DurationError):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=5), "5m0s"),
        (timedelta(hours=1, minutes=2, seconds=3), "1h2m3s"),
        (timedelta(milliseconds=300), "300ms"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (-timedelta(minutes=90), "-1h30m0s"),
        (timedelta(microseconds=7), "7\u00b5s"),
        (timedelta(hours=30), "30h0m0s"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_go_duration(value) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_round_trip(micros: int) -> None:
    value = timedelta(microseconds=micros)
    assert parse_go_duration(format_go_duration(value)) == value
