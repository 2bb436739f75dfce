"""Deadlines on the right day and the send window (domain.deadlines; §§ 187, 188, 193 BGB).

Weekdays used below (1 Jan 2026 is a Thursday): Sun 2026-06-14, Mon 06-15, Thu 06-04
(Fronleichnam), Fri 06-05; Fri 2026-12-25, Sat 12-26, Sun 12-27, Mon 12-28; Wed 2026-11-18
(Buß- und Bettag), Thu 11-19; Sun 2026-03-29 (summer time begins), Mon 03-30.
Berlin is UTC+2 in summer and UTC+1 in winter, so 00:00 Berlin is 22:00Z / 23:00Z the day
before.
"""

from datetime import UTC, date, datetime, timedelta

import pytest

from domain.deadlines import (
    Deadline,
    SendWindow,
    deadline_after,
    deadline_before,
    is_day_based,
    next_send_time,
    parse_hhmm,
)
from domain.schedule import BERLIN, berlin_midnight


def berlin(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=BERLIN)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# ---------------------------------------------------------------- deadline before the next step


def test_the_deadline_is_the_day_before_the_step_and_the_step_waits_for_it_to_end() -> None:
    # The old behaviour printed the step's own day as the deadline and charged at 00:00 of
    # it. A step on Wednesday 2026-06-10 00:00: the last day to pay is Tuesday 06-09, and the
    # step stays where it was planned (00:00 after the deadline ended).
    d = deadline_before(berlin(2026, 6, 10))
    assert d == Deadline("2026-06-09", utc("2026-06-09T22:00:00+00:00"), "2026-06-09", "")
    assert d.next_step_at.astimezone(BERLIN).date() > date.fromisoformat(d.last_day)


def test_a_deadline_on_a_sunday_moves_to_monday_and_the_step_to_tuesday() -> None:
    # Step planned for Monday 2026-06-15 00:00: the last whole day before it is Sunday 06-14;
    # § 193 BGB → Monday 06-15, so the step happens at Tuesday 06-16 00:00 Berlin.
    d = deadline_before(berlin(2026, 6, 15))
    assert (d.unshifted, d.last_day, d.shift_reason) == ("2026-06-14", "2026-06-15", "Sonntag")
    assert d.next_step_at == berlin_midnight(date(2026, 6, 16))
    assert d.next_step_at == utc("2026-06-15T22:00:00+00:00")


def test_a_deadline_on_christmas_day_moves_past_the_weekend() -> None:
    # Step planned for Saturday 2026-12-26 00:00 → unshifted Friday 12-25 (1. Weihnachtstag),
    # Sat 12-26 (2. Weihnachtstag and Saturday), Sun 12-27 → Monday 12-28; step 12-29 00:00
    # Berlin = 2026-12-28T23:00Z (winter time).
    d = deadline_before(berlin(2026, 12, 26))
    assert (d.unshifted, d.last_day, d.shift_reason) == (
        "2026-12-25",
        "2026-12-28",
        "1. Weihnachtstag",
    )
    assert d.next_step_at == utc("2026-12-28T23:00:00+00:00")


@pytest.mark.parametrize(
    ("state", "last_day", "reason"),
    [
        ("NW", "2026-06-05", "Fronleichnam"),  # a holiday in Nordrhein-Westfalen
        ("BE", "2026-06-04", ""),  # a working day in Berlin
        ("", "2026-06-04", ""),  # not a nationwide holiday
    ],
)
def test_a_deadline_on_a_state_holiday(state: str, last_day: str, reason: str) -> None:
    # Step on Friday 2026-06-05 00:00: unshifted deadline Thursday 06-04, Fronleichnam
    # (Easter Sunday 2026-04-05 + 60 days).
    d = deadline_before(berlin(2026, 6, 5), state=state)
    assert (d.last_day, d.shift_reason) == (last_day, reason)
    assert d.next_step_at == berlin_midnight(date.fromisoformat(last_day) + timedelta(days=1))


def test_repentance_day_only_in_saxony() -> None:
    # Buß- und Bettag, Wednesday 2026-11-18: a holiday in Sachsen only.
    assert deadline_before(berlin(2026, 11, 19), state="SN").last_day == "2026-11-19"
    assert deadline_before(berlin(2026, 11, 19), state="BY").last_day == "2026-11-18"


def test_a_step_later_in_the_day_is_not_moved_earlier() -> None:
    # Step at Wednesday 2026-06-10 10:00: the last whole day before it is 06-09; the step
    # stays at 10:00 (never earlier than planned).
    step = berlin(2026, 6, 10, 10)
    d = deadline_before(step)
    assert d.last_day == "2026-06-09" and d.next_step_at == step.astimezone(UTC)


def test_across_the_change_to_summer_time() -> None:
    # Step Monday 2026-03-30 00:00 (CEST, 22:00Z on 03-29): deadline Sunday 03-29 → Monday
    # 03-30; step Tuesday 03-31 00:00 CEST = 2026-03-30T22:00Z.
    d = deadline_before(berlin(2026, 3, 30))
    assert d.last_day == "2026-03-30"
    assert d.next_step_at == utc("2026-03-30T22:00:00+00:00")


def test_demo_ladders_in_seconds_are_not_moved() -> None:
    step = berlin(2026, 6, 14, 12, 0)  # a Sunday, but the demo counts in seconds
    d = deadline_before(step, day_based=False)
    assert d.last_day == "2026-06-14" and d.next_step_at == step.astimezone(UTC)
    assert is_day_based([timedelta(days=3), timedelta(days=14)])
    assert not is_day_based([timedelta(days=3), timedelta(seconds=30)])


# ---------------------------------------------------------------- a period from a notice


def test_fourteen_days_from_a_notice() -> None:
    # Sent Monday 2026-06-01 10:00: the day of sending does not count (§ 187 (1) BGB), the
    # period ends with its 14th day (§ 188 (1) BGB): Monday 06-15; the step may follow at
    # 06-16 00:00.
    d = deadline_after(berlin(2026, 6, 1, 10), 14)
    assert (d.last_day, d.shift_reason) == ("2026-06-15", "")
    assert d.next_step_at == berlin_midnight(date(2026, 6, 16))


def test_fourteen_days_ending_on_christmas() -> None:
    # Sent Friday 2026-12-11: + 14 = Friday 12-25 → Monday 12-28 (§ 193 BGB).
    d = deadline_after(berlin(2026, 12, 11, 9), 14)
    assert (d.unshifted, d.last_day) == ("2026-12-25", "2026-12-28")


@pytest.mark.parametrize("days", [0, -1, True, 1.5])
def test_the_period_must_be_positive_days(days: object) -> None:
    with pytest.raises(ValueError, match="days must be a positive integer"):
        deadline_after(berlin(2026, 6, 1), days)  # type: ignore[arg-type]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="step_at must be timezone-aware"):
        deadline_before(datetime(2026, 6, 1))


# ---------------------------------------------------------------- send window


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Sunday 00:00 → Monday 08:00 Berlin
        (berlin(2026, 6, 14), berlin(2026, 6, 15, 8)),
        # a step at 00:00 on a Wednesday → 08:00 the same day
        (berlin(2026, 6, 10), berlin(2026, 6, 10, 8)),
        # inside the window: unchanged
        (berlin(2026, 6, 10, 17, 59), berlin(2026, 6, 10, 17, 59)),
        # 18:00 is outside (end exclusive) → next morning
        (berlin(2026, 6, 10, 18), berlin(2026, 6, 11, 8)),
        # Friday evening → Monday morning
        (berlin(2026, 6, 12, 19), berlin(2026, 6, 15, 8)),
        # Christmas Eve evening → Monday 28 December (25, 26 holidays, 27 Sunday)
        (berlin(2026, 12, 24, 19), berlin(2026, 12, 28, 8)),
    ],
)
def test_default_send_window(at: datetime, expected: datetime) -> None:
    sent = next_send_time(at, SendWindow())
    assert sent == expected.astimezone(UTC)
    assert sent.tzinfo == UTC


def test_send_window_days_and_state() -> None:
    christmas = berlin(2026, 12, 25, 10)
    assert next_send_time(christmas, SendWindow(days="weekdays")) == christmas
    assert next_send_time(christmas, SendWindow(days="all", start="00:00", end="24:00")) == (
        christmas
    )
    corpus_christi = berlin(2026, 6, 4, 9)
    assert next_send_time(corpus_christi, SendWindow(), state="BE") == corpus_christi
    assert next_send_time(corpus_christi, SendWindow(), state="NW") == berlin(2026, 6, 5, 8)


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="start 18:00 must be before end 08:00"):
        next_send_time(berlin(2026, 6, 1), SendWindow(start="18:00", end="08:00"))
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm("8:00")
    assert parse_hhmm("24:00") == 1440 and parse_hhmm("08:30") == 510
