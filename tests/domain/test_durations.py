from datetime import timedelta

import pytest

from domain.durations import Interval, format_duration, parse_duration, parse_interval


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(seconds=5 * 60)),  # 300 s
        ("2h", timedelta(seconds=2 * 3600)),  # 7200 s
        ("3d", timedelta(days=3)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(days=2 * 7)),  # 14 days
        ("38d", timedelta(days=38)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "3", "d", "3D", "3 d", " 3d", "3d ", "-3d", "+3d", "1.5d", "3days", "3y", "1M", "P3D"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_duration(text)
    message = str(excinfo.value)
    assert repr(text) in message
    assert "<int><unit>" in message


def test_parse_duration_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="<int><unit>"):
        parse_duration(3)  # type: ignore[arg-type]


def test_parse_duration_too_large_is_value_error() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("99999999999999w")


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=36), "36h"),
        (timedelta(days=3), "3d"),
        (timedelta(days=14), "2w"),
    ],
)
def test_format_duration_round_trips(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P1M", Interval(months=1)),
        ("P3M", Interval(months=3)),
        ("P1Y", Interval(months=12)),
        ("P2Y6M", Interval(months=2 * 12 + 6)),  # 30 months
        ("P14D", Interval(days=14)),
        ("P2W", Interval(days=2 * 7)),  # 14 days
        ("PT30S", Interval(seconds=30)),
        ("PT5M", Interval(seconds=5 * 60)),  # 300 s
        ("PT1H", Interval(seconds=3600)),
        ("P1DT12H", Interval(days=1, seconds=12 * 3600)),  # 1 day + 43200 s
        ("P1M14D", Interval(months=1, days=14)),
        ("PT1H30M15S", Interval(seconds=3600 + 30 * 60 + 15)),  # 5415 s
    ],
)
def test_parse_interval(text: str, expected: Interval) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "P1DT",
        "1M",
        "p1m",
        "P1.5M",
        "P-1M",
        "P1S",  # seconds need the T designator
        "PT1D",  # days cannot be a time component
        "P1M1Y",  # wrong order
        "P 1M",
        "monthly",
    ],
)
def test_parse_interval_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_interval(text)
    assert repr(text) in str(excinfo.value)


@pytest.mark.parametrize("text", ["P0D", "P0M", "PT0S", "P0Y0M0DT0H0M0S"])
def test_parse_interval_rejects_zero(text: str) -> None:
    with pytest.raises(ValueError, match="must not be zero") as excinfo:
        parse_interval(text)
    assert repr(text) in str(excinfo.value)
