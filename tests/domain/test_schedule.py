"""Due-date arithmetic. Europe/Berlin is UTC+1 (CET) in winter and UTC+2 (CEST) in summer;
DST starts on the last Sunday of March (2026-03-29, 2027-03-28, 2028-03-26) and ends on the
last Sunday of October (2026-10-25). So 00:00 Berlin is 23:00Z the day before in winter and
22:00Z the day before in summer."""

from datetime import UTC, date, datetime, timedelta

import pytest

from domain.durations import Interval, parse_interval
from domain.schedule import (
    BERLIN,
    berlin_date,
    berlin_midnight,
    due_instant,
    installment_due_times,
    shift,
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def local(dt: datetime) -> str:
    """The Berlin wall-clock time of an instant, e.g. '2027-02-28 00:00'."""
    return dt.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M")


MONTHLY = Interval(months=1)
YEARLY = parse_interval("P1Y")


# ---------------------------------------------------------------- due_instant


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # an ISO date is 00:00 Berlin: winter = UTC+1, so 23:00Z the day before
        ("2026-12-01", utc(2026, 11, 30, 23, 0)),
        # summer = UTC+2, so 22:00Z the day before
        ("2026-07-01", utc(2026, 6, 30, 22, 0)),
        # RFC 3339 date-times are taken as is
        ("2026-11-27T10:00:00+01:00", utc(2026, 11, 27, 9, 0)),
        ("2026-11-27T10:00:00Z", utc(2026, 11, 27, 10, 0)),
        ("2026-11-27t10:00:00z", utc(2026, 11, 27, 10, 0)),
        ("2026-11-27T10:00:00.250+02:00", utc(2026, 11, 27, 8, 0, 0, 250000)),
        ("2026-11-27 10:00:00-05:00", utc(2026, 11, 27, 15, 0)),
    ],
)
def test_due_instant(value: str, expected: datetime) -> None:
    result = due_instant(value)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_due_instant_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        due_instant("2026-12-01T10:00:00")


@pytest.mark.parametrize(
    "value", ["", "tomorrow", "2026-13-01", "2026-02-30", "01.12.2026", "2026-12-01T25:00Z"]
)
def test_due_instant_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        due_instant(value)


def test_berlin_midnight() -> None:
    assert berlin_midnight(date(2027, 3, 28)) == utc(2027, 3, 27, 23, 0)  # DST starts at 02:00
    assert berlin_midnight(date(2027, 3, 29)) == utc(2027, 3, 28, 22, 0)


# ---------------------------------------------------------------- berlin_date


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (utc(2026, 11, 30, 22, 59), "2026-11-30"),  # 23:59 CET
        (utc(2026, 11, 30, 23, 0), "2026-12-01"),  # 00:00 CET
        (utc(2026, 6, 30, 22, 0), "2026-07-01"),  # 00:00 CEST
        (datetime(2026, 12, 1, 0, 30, tzinfo=BERLIN), "2026-12-01"),
    ],
)
def test_berlin_date(instant: datetime, expected: str) -> None:
    assert berlin_date(instant) == expected


def test_berlin_date_rejects_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        berlin_date(datetime(2026, 12, 1))


# ---------------------------------------------------------------- shift: months


def test_month_ends_keep_the_day_of_month() -> None:
    start = due_instant("2027-01-31")
    dates = [berlin_date(shift(start, MONTHLY, n)) for n in range(5)]
    # 31 Jan → 28 Feb (2027 is not a leap year) → back to 31 Mar → 30 Apr → 31 May
    assert dates == ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]
    # and every one of them at 00:00 Berlin, also after DST starts on 28 Mar 2027
    assert [local(shift(start, MONTHLY, n)) for n in range(5)] == [
        "2027-01-31 00:00",
        "2027-02-28 00:00",
        "2027-03-31 00:00",
        "2027-04-30 00:00",
        "2027-05-31 00:00",
    ]
    # in UTC: 23:00Z the day before in winter, 22:00Z in summer
    assert shift(start, MONTHLY, 1) == utc(2027, 2, 27, 23, 0)
    assert shift(start, MONTHLY, 2) == utc(2027, 3, 30, 22, 0)


def test_leap_year_february() -> None:
    start = due_instant("2028-01-31")
    assert berlin_date(shift(start, MONTHLY, 1)) == "2028-02-29"  # 2028 is a leap year
    assert berlin_date(shift(start, MONTHLY, 2)) == "2028-03-31"


def test_29_february_plus_one_year() -> None:
    start = due_instant("2028-02-29")
    assert berlin_date(shift(start, YEARLY, 1)) == "2029-02-28"
    assert berlin_date(shift(start, YEARLY, 2)) == "2030-02-28"
    # counted from the original start, so the next leap year gets its 29th again
    assert berlin_date(shift(start, YEARLY, 4)) == "2032-02-29"


def test_month_step_keeps_wall_time_across_dst() -> None:
    start = datetime(2026, 1, 31, 9, 30, tzinfo=BERLIN)  # 08:30Z
    assert local(shift(start, MONTHLY, 1)) == "2026-02-28 09:30"
    assert local(shift(start, MONTHLY, 3)) == "2026-04-30 09:30"
    assert shift(start, MONTHLY, 3) == utc(2026, 4, 30, 7, 30)  # CEST = UTC+2


def test_dst_change_keeps_midnight_berlin() -> None:
    start = due_instant("2026-03-01")  # 2026-02-28T23:00Z (CET)
    nxt = shift(start, MONTHLY, 1)  # DST started on 29 Mar 2026
    assert nxt == utc(2026, 3, 31, 22, 0)  # 2026-04-01 00:00 CEST
    assert local(nxt) == "2026-04-01 00:00"
    # and back again in autumn (DST ends on 25 Oct 2026)
    start = due_instant("2026-10-01")  # 2026-09-30T22:00Z (CEST)
    assert shift(start, MONTHLY, 1) == utc(2026, 10, 31, 23, 0)  # 2026-11-01 00:00 CET


def test_negative_n_counts_backwards() -> None:
    start = due_instant("2027-03-31")
    assert berlin_date(shift(start, MONTHLY, -1)) == "2027-02-28"


def test_n_zero_is_start_in_utc() -> None:
    start = datetime(2026, 12, 1, 10, 0, tzinfo=BERLIN)
    result = shift(start, MONTHLY, 0)
    assert result == start
    assert result.tzinfo is UTC


def test_shift_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        shift(datetime(2026, 12, 1), MONTHLY, 1)


def test_shift_out_of_range_is_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        shift(due_instant("2026-12-01"), Interval(months=12 * 9000), 1)
    with pytest.raises(ValueError, match="out of range"):
        shift(due_instant("2026-12-01"), Interval(days=10**6), 10**4)


# ---------------------------------------------------------------- shift: days and seconds


def test_p14d_across_spring_dst() -> None:
    start = due_instant("2026-03-20")  # 2026-03-19T23:00Z (CET)
    result = shift(start, parse_interval("P14D"), 1)
    assert result == utc(2026, 4, 2, 22, 0)  # 2026-04-03 00:00 CEST
    assert local(result) == "2026-04-03 00:00"
    # the calendar step is 14 days, but only 14 × 24 − 1 = 335 hours elapse
    assert result - start == timedelta(hours=335)


def test_p14d_across_autumn_dst() -> None:
    start = due_instant("2026-10-20")  # 2026-10-19T22:00Z (CEST)
    result = shift(start, parse_interval("P14D"), 1)
    assert local(result) == "2026-11-03 00:00"
    assert result - start == timedelta(hours=14 * 24 + 1)  # 337 hours


def test_p2w_equals_p14d() -> None:
    start = due_instant("2026-12-01")
    assert shift(start, parse_interval("P2W"), 3) == shift(start, parse_interval("P14D"), 3)
    assert berlin_date(shift(start, parse_interval("P2W"), 3)) == "2027-01-12"  # 1 Dec + 42 d


def test_pt30s_is_exact_elapsed_time() -> None:
    start = utc(2026, 12, 1, 10, 0, 0)
    assert shift(start, parse_interval("PT30S"), 1) == utc(2026, 12, 1, 10, 0, 30)
    assert shift(start, parse_interval("PT30S"), 3) == utc(2026, 12, 1, 10, 1, 30)  # 3 × 30 s


def test_pt30s_across_dst_is_still_30_seconds() -> None:
    start = utc(2026, 3, 29, 0, 59, 45)  # 01:59:45 CET, the clock jumps at 02:00 CET
    result = shift(start, parse_interval("PT30S"), 1)
    assert result - start == timedelta(seconds=30)
    assert local(result) == "2026-03-29 03:00"  # 01:00:15Z = 03:00:15 CEST


def test_p1dt12h() -> None:
    start = due_instant("2026-12-01")
    assert local(shift(start, parse_interval("P1DT12H"), 1)) == "2026-12-02 12:00"
    assert local(shift(start, parse_interval("P1DT12H"), 2)) == "2026-12-04 00:00"  # 3 days


def test_nonexistent_local_time_moves_forward() -> None:
    # 02:30 on 29 Mar 2026 does not exist in Berlin; it resolves to 03:30 CEST = 01:30Z
    start = datetime(2026, 1, 29, 2, 30, tzinfo=BERLIN)
    result = shift(start, MONTHLY, 2)
    assert result == utc(2026, 3, 29, 1, 30)
    assert local(result) == "2026-03-29 03:30"


# ---------------------------------------------------------------- installment_due_times


def test_24_monthly_due_dates() -> None:
    times = installment_due_times("2026-12-01", "P1M", 24)
    assert len(times) == 24
    expected_dates = [
        f"{2026 + (11 + i) // 12}-{(11 + i) % 12 + 1:02d}-01" for i in range(24)
    ]  # 2026-12-01, 2027-01-01, … 2028-11-01
    assert expected_dates[0] == "2026-12-01"
    assert expected_dates[-1] == "2028-11-01"
    assert [berlin_date(t) for t in times] == expected_dates
    assert all(local(t).endswith(" 00:00") for t in times)
    assert all(t.tzinfo is UTC for t in times)
    assert times == sorted(times)
    # offsets alternate with DST: 23:00Z in winter, 22:00Z in summer
    assert times[0] == utc(2026, 11, 30, 23, 0)
    assert times[7] == utc(2027, 6, 30, 22, 0)  # 2027-07-01 00:00 CEST


def test_monthly_plan_from_the_31st() -> None:
    times = installment_due_times("2026-12-31", "P1M", 15)
    dates = [berlin_date(t) for t in times]
    assert dates[:6] == [
        "2026-12-31",
        "2027-01-31",
        "2027-02-28",
        "2027-03-31",
        "2027-04-30",
        "2027-05-31",
    ]
    assert dates[14] == "2028-02-29"  # 14 months later, in a leap year


def test_installments_with_datetime_first_due() -> None:
    times = installment_due_times("2026-12-01T10:00:00+01:00", "P1M", 3)
    assert [local(t) for t in times] == [
        "2026-12-01 10:00",
        "2027-01-01 10:00",
        "2027-02-01 10:00",
    ]


def test_installments_every_30_seconds() -> None:
    times = installment_due_times("2026-12-01T10:00:00Z", "PT30S", 3)
    assert times == [
        utc(2026, 12, 1, 10, 0, 0),
        utc(2026, 12, 1, 10, 0, 30),
        utc(2026, 12, 1, 10, 1),
    ]


@pytest.mark.parametrize(
    ("first_due", "interval", "count", "match"),
    [
        ("2026-12-01", "P1M", 0, "positive integer"),
        ("2026-12-01", "P1M", -3, "positive integer"),
        ("2026-12-01", "P0D", 3, "must not be zero"),
        ("2026-12-01", "1M", 3, "invalid interval"),
        ("2026-12-01T10:00:00", "P1M", 3, "no UTC offset"),
    ],
)
def test_installment_due_times_rejects(
    first_due: str, interval: str, count: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        installment_due_times(first_due, interval, count)
